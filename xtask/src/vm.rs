//! `cargo xtask vm-test`: the eBPF tests in kprobe mode (and once more in tracepoint mode) on a
//! Debian 6.1 kernel that has kprobes, booted under QEMU (TCG) from an initramfs that carries
//! everything the tests need. This machine's own kernel has no kprobes, so this is where kprobe
//! mode is proven. See README.md, "For contributors".
use crate::setup::{apt_install, run, stdout_of};
use anyhow::{Context, Result, bail, ensure};
use owned_child::OwnedChild;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the VM needs on the host; `binutils` for `strip`, which keeps the initramfs small.
const PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static", "cpio", "binutils"];
/// The Debian metapackage whose dependency names the current 6.1 cloud kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
/// Built-in (`=y`) options the VM relies on: kprobes, BTF for the loader, a serial console, and
/// booting from a gzip initramfs. All built in, so the initramfs carries no modules.
const KERNEL_CONFIG: &[&str] = &[
    "CONFIG_KPROBES",
    "CONFIG_KRETPROBES",
    "CONFIG_BPF_SYSCALL",
    "CONFIG_BPF_EVENTS",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_SCHEDSTATS",
    "CONFIG_SERIAL_8250_CONSOLE",
    "CONFIG_DEVTMPFS",
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_RD_GZIP",
    "CONFIG_INET",
];
/// Where busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";
/// Boot to verdict, in seconds; the VM is killed after it. A passing run takes about 150 s on
/// two quiet cores; `TCPPROF_VM_TIME_LIMIT` (seconds) stretches the limit on a busy machine.
const TIME_LIMIT_S: u64 = 300;
/// mitigations=off: syscall entry and exit cost far less under emulation.
/// rcupdate.rcu_expedited=1: detaching ~80 kprobes waits for RCU grace periods; expedited ones
/// take a kprobe session's teardown from ~13 s to ~8 s under TCG.
/// clocksource=tsc tsc=reliable: otherwise the kernel distrusts the emulated TSC and reads the
/// HPET, an emulated device access on every clock read, which the eBPF programs make on every
/// syscall. That made syscalls several times dearer relative to user code than on hardware and
/// skewed the breakdown tests' shares (process fell below 60% in `burn_is_process`). QEMU's TSC
/// follows one virtual clock for every vCPU, so it is monotonic and synchronised.
const KERNEL_CMDLINE: &str =
    "console=ttyS0 panic=-1 quiet mitigations=off rcupdate.rcu_expedited=1 clocksource=tsc tsc=reliable";
/// The /init script prints this, then PASS or FAIL and the failed runs, on the serial console.
const VERDICT: &str = "TCPPROF-VM-VERDICT:";

/// One test binary run inside the VM in one mode (`TCPPROF_TEST_MODE`).
struct TestRun {
    name: &'static str,
    test: &'static str,
    mode: &'static str,
}

const RUNS: &[TestRun] = &[
    TestRun {
        name: "breakdown-kprobe",
        test: "breakdown",
        mode: "kprobe",
    },
    TestRun {
        name: "breakdown-tracepoint",
        test: "breakdown",
        mode: "tracepoint",
    },
    TestRun {
        name: "ebpf_counts-kprobe",
        test: "ebpf_counts",
        mode: "kprobe",
    },
];

/// The executables the VM runs, at the absolute paths cargo built them at. They keep those paths
/// inside the VM: `CARGO_BIN_EXE_tcpprof` is compiled into the tests as an absolute path.
struct Binaries {
    /// (test target name, executable)
    tests: Vec<(String, PathBuf)>,
    bench_server: PathBuf,
    profiler: PathBuf,
}

pub fn vm_test(root: &Path) -> Result<()> {
    let started = Instant::now();
    let cache = root.join("target/vm");
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;

    step_packages()?;
    let kernel = kernel(&cache)?;
    let binaries = build(root)?;
    let initrd = initramfs(&cache, &binaries)?;
    eprintln!(
        "vm-test: prepared in {:.1} s; booting {} under QEMU (TCG)",
        started.elapsed().as_secs_f64(),
        kernel.package
    );
    let verdict = boot(&kernel.vmlinuz, &initrd);
    eprintln!("vm-test: {:.1} s in all", started.elapsed().as_secs_f64());
    verdict
}

fn report(name: &str, status: &str) {
    eprintln!("vm-test: {name:<40} {status}");
}

fn step_packages() -> Result<()> {
    let name = PACKAGES.join(", ");
    if PACKAGES.iter().all(|p| deb_installed(p)) {
        report(&name, "ok");
        return Ok(());
    }
    report(&name, "installing...");
    apt_install(PACKAGES)?;
    report(&name, "installed");
    Ok(())
}

struct Kernel {
    /// The package as downloaded: `linux-image-6.1.0-NN-cloud-amd64_<version>_amd64`.
    package: String,
    vmlinuz: PathBuf,
}

/// The Debian cloud kernel, unpacked under `cache/kernel`; downloaded and unpacked only when the
/// cache has none. The .deb's name is kept in `cache/kernel/PACKAGE`.
fn kernel(cache: &Path) -> Result<Kernel> {
    let unpacked = cache.join("kernel");
    let kernel = match cached_kernel(&unpacked)? {
        Some(kernel) => {
            report(&format!("kernel {}", kernel.package), "ok");
            kernel
        }
        None => unpack_kernel(cache, &unpacked)?,
    };
    check_config(&kernel)?;
    Ok(kernel)
}

fn unpack_kernel(cache: &Path, unpacked: &Path) -> Result<Kernel> {
    let package = kernel_package()?;
    let deb = match cached_deb(cache, &package)? {
        Some(deb) => deb,
        None => {
            report(&format!("kernel {package}"), "downloading...");
            download(cache, &package)?;
            cached_deb(cache, &package)?.with_context(|| format!("apt-get download left no {package}_*.deb"))?
        }
    };
    let partial = cache.join("kernel.partial");
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&partial))?;
    let name = deb.file_stem().context("deb has a name")?.to_string_lossy();
    fs::write(partial.join("PACKAGE"), format!("{name}\n"))?;
    if unpacked.exists() {
        fs::remove_dir_all(unpacked)?;
    }
    fs::rename(&partial, unpacked)?;
    report(&format!("kernel {name}"), "unpacked");
    cached_kernel(unpacked)?.context("the kernel package has no boot/vmlinuz-*")
}

fn cached_kernel(unpacked: &Path) -> Result<Option<Kernel>> {
    let Ok(package) = fs::read_to_string(unpacked.join("PACKAGE")) else {
        return Ok(None);
    };
    let vmlinuz = files_starting_with(&unpacked.join("boot"), "vmlinuz-")?;
    Ok(vmlinuz.into_iter().next().map(|vmlinuz| Kernel {
        package: package.trim().to_string(),
        vmlinuz,
    }))
}

fn cached_deb(cache: &Path, package: &str) -> Result<Option<PathBuf>> {
    Ok(files_starting_with(cache, &format!("{package}_"))?
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "deb")))
}

fn files_starting_with(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// `linux-image-6.1.0-NN-cloud-amd64`: what the metapackage depends on, or else the highest ABI
/// the package lists know. Refreshes the lists once when they know none.
fn kernel_package() -> Result<String> {
    if let Some(package) = resolve_kernel_package() {
        return Ok(package);
    }
    apt_update()?;
    resolve_kernel_package()
        .context("no linux-image-6.1.0-*-cloud-amd64 in the apt lists (a Debian 12 bookworm source is needed)")
}

fn resolve_kernel_package() -> Option<String> {
    let is_61_cloud = |name: &str| {
        name.strip_prefix("linux-image-6.1.0-")
            .and_then(|rest| rest.strip_suffix("-cloud-amd64"))
            .is_some_and(|abi| !abi.is_empty() && abi.bytes().all(|b| b.is_ascii_digit()))
    };
    let depends = stdout_of(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]));
    if let Some(package) = depends.ok().and_then(|out| {
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(str::trim)
            .find(|name| is_61_cloud(name))
            .map(String::from)
    }) {
        return Some(package);
    }
    let search = stdout_of(Command::new("apt-cache").args([
        "search",
        "--names-only",
        r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
    ]))
    .ok()?;
    search
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| is_61_cloud(name))
        .max_by_key(|name| {
            name.trim_start_matches("linux-image-6.1.0-")
                .trim_end_matches("-cloud-amd64")
                .parse::<u32>()
                .unwrap_or(0)
        })
        .map(String::from)
}

/// `apt-get download` into the cache; refreshes the lists and retries once when the mirror no
/// longer has the version the lists name.
fn download(cache: &Path, package: &str) -> Result<()> {
    let attempt = || {
        run(Command::new("apt-get")
            // The cache is root's: without this apt warns that its sandbox user cannot write it.
            .args(["-q", "-o", "APT::Sandbox::User=root", "download", package])
            .current_dir(cache))
    };
    if attempt().is_ok() {
        return Ok(());
    }
    apt_update()?;
    attempt()
}

fn apt_update() -> Result<()> {
    run(Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn check_config(kernel: &Kernel) -> Result<()> {
    let boot = kernel.vmlinuz.parent().context("vmlinuz has no directory")?;
    let config_file = files_starting_with(boot, "config-")?
        .into_iter()
        .next()
        .with_context(|| format!("no config-* beside {}", kernel.vmlinuz.display()))?;
    let config = fs::read_to_string(&config_file)?;
    let missing: Vec<&str> = KERNEL_CONFIG
        .iter()
        .copied()
        .filter(|option| !config.lines().any(|l| l == format!("{option}=y")))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} lacks built-in {missing:?}: the VM cannot prove kprobe mode with it",
        kernel.package
    );
    Ok(())
}

/// The `breakdown` and `ebpf_counts` test executables, `bench-server` and `tcpprof`, built by
/// cargo and located from its JSON messages. Release profile, unlike `cargo test`: under TCG an
/// unoptimised loader spends ~100 s of user time per kprobe attach (it looks up each of ~80
/// probe symbols in /proc/kallsyms, ~150,000 lines, and parses the kernel's BTF), against ~3 s
/// optimised, and the 5-minute budget holds about eleven kprobe sessions. The assertions are
/// plain `assert!`s, so they hold the same in both profiles.
fn build(root: &Path) -> Result<Binaries> {
    report("test binaries", "building...");
    let artifacts = cargo_artifacts(root, &["test", "--release", "--no-run", "-p", "profiler", "--tests"])?;
    let mut tests = Vec::new();
    for test in ["breakdown", "ebpf_counts"] {
        let exe = artifacts
            .iter()
            .find(|a| a.kind == "test" && a.name == test)
            .with_context(|| format!("cargo built no `{test}` test executable"))?;
        tests.push((test.to_string(), exe.executable.clone()));
    }
    let artifacts = cargo_artifacts(root, &["build", "--release", "-p", "bench", "-p", "profiler"])?;
    let bin = |name: &str| -> Result<PathBuf> {
        artifacts
            .iter()
            .find(|a| a.kind == "bin" && a.name == name)
            .map(|a| a.executable.clone())
            .with_context(|| format!("cargo built no `{name}` binary"))
    };
    let binaries = Binaries {
        tests,
        bench_server: bin("bench-server")?,
        profiler: bin("tcpprof")?,
    };
    report("test binaries", "built");
    Ok(binaries)
}

struct Artifact {
    kind: String,
    name: String,
    executable: PathBuf,
}

/// Runs cargo with JSON messages on stdout (diagnostics still rendered on stderr) and returns
/// the executables it built or found fresh.
fn cargo_artifacts(root: &Path, args: &[&str]) -> Result<Vec<Artifact>> {
    let mut cmd = crate::cargo();
    cmd.args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root);
    let stdout = stdout_of(&mut cmd)?;
    let mut artifacts = Vec::new();
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        let target = &message["target"];
        let kind = target["kind"][0].as_str().unwrap_or_default();
        artifacts.push(Artifact {
            kind: kind.to_string(),
            name: target["name"].as_str().unwrap_or_default().to_string(),
            executable: executable.into(),
        });
    }
    Ok(artifacts)
}

/// A gzip'd newc cpio: busybox, the binaries (debug info stripped) and their shared libraries
/// at their host paths, and /init. Rebuilt every run (a few seconds): the binaries change.
fn initramfs(cache: &Path, binaries: &Binaries) -> Result<PathBuf> {
    let root = cache.join("initramfs");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root", "etc",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    ensure!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} missing: is busybox-static installed?"
    );
    copy_into(&root, Path::new(BUSYBOX))?;
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n")?;

    let mut executables: Vec<&Path> = binaries.tests.iter().map(|(_, p)| p.as_path()).collect();
    executables.extend([binaries.bench_server.as_path(), binaries.profiler.as_path()]);
    let mut libraries = Vec::new();
    for exe in &executables {
        let dest = inside(&root, exe);
        fs::create_dir_all(dest.parent().context("executable has no directory")?)?;
        // Whatever debug info the profile carries; symbols stay, so backtraces keep names.
        run(Command::new("strip").arg("--strip-debug").arg("-o").arg(&dest).arg(exe))?;
        for lib in shared_libraries(exe)? {
            if !libraries.contains(&lib) {
                libraries.push(lib);
            }
        }
    }
    for lib in &libraries {
        copy_into(&root, lib)?;
    }

    let init = root.join("init");
    fs::write(&init, init_script(binaries))?;
    set_executable(&init)?;

    let initrd = cache.join("initramfs.cpio.gz");
    let archive = format!(
        "cd '{}' && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet | gzip -1 > '{}'",
        root.display(),
        initrd.display()
    );
    run(Command::new("bash").args(["-o", "pipefail", "-c", &archive])).context("packing the initramfs")?;
    let size = fs::metadata(&initrd)?.len();
    report(
        "initramfs",
        &format!(
            "built ({} executables, {} libraries, {:.1} MB)",
            executables.len(),
            libraries.len(),
            size as f64 / 1e6
        ),
    );
    Ok(initrd)
}

/// The path a host file keeps inside the initramfs rooted at `root`.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Copies a host file (following symlinks) to the same path under `root`.
fn copy_into(root: &Path, path: &Path) -> Result<()> {
    let dest = inside(root, path);
    fs::create_dir_all(dest.parent().context("file has no directory")?)?;
    fs::copy(path, &dest).with_context(|| format!("copying {}", path.display()))?;
    Ok(())
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The libraries `ldd` resolves for an executable, the dynamic loader included.
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = stdout_of(Command::new("ldd").arg(exe))?;
    let mut libs = Vec::new();
    for line in out.lines() {
        ensure!(!line.contains("not found"), "{}: {}", exe.display(), line.trim());
        // "libc.so.6 => /lib/.../libc.so.6 (0x..)", "/lib64/ld-linux-x86-64.so.2 (0x..)";
        // the vdso has no path.
        if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// PID 1 inside the VM: mounts what the loader and the tests read, brings up loopback, runs each
/// test binary in its mode and prints the verdict, then powers off.
fn init_script(binaries: &Binaries) -> String {
    let mut runs = String::new();
    for r in RUNS {
        let (_, exe) = binaries
            .tests
            .iter()
            .find(|(name, _)| name == r.test)
            .expect("build() finds every test in RUNS");
        runs.push_str(&format!("run {} {} '{}'\n", r.name, r.mode, exe.display()));
    }
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root RUST_BACKTRACE=1
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo  # ends the firmware's last line, which has no newline
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
# No tmpfs on /tmp: the initramfs root is already writable, and the workspace (with the test
# binaries at their host paths) may itself live under /tmp.
ip link set lo up
# Booted quiet; from here on the console shows the kernel's warnings with their backtraces.
echo 7 > /proc/sys/kernel/printk
ulimit -n 65536
ulimit -l unlimited
yes_no() {{ if [ -e "$1" ]; then echo yes; else echo no; fi; }}
echo "TCPPROF-VM: kernel $(uname -r), $(nproc) CPUs, kprobe PMU: $(yes_no /sys/bus/event_source/devices/kprobe), BTF: $(yes_no /sys/kernel/btf/vmlinux)"
export TCPPROF_BENCH_SERVER='{bench_server}'
failed=""
run() {{
    name=$1 mode=$2 exe=$3
    echo "TCPPROF-VM: run $name (TCPPROF_TEST_MODE=$mode)"
    start=$(date +%s)
    if TCPPROF_TEST_MODE=$mode "$exe" --test-threads=1 --color never; then
        echo "TCPPROF-VM: ok $name in $(( $(date +%s) - start )) s"
    else
        echo "TCPPROF-VM: FAILED $name in $(( $(date +%s) - start )) s"
        failed="$failed $name"
    fi
}}
{runs}if [ -z "$failed" ]; then
    echo "{VERDICT} PASS"
else
    echo "{VERDICT} FAIL$failed"
fi
sync
poweroff -f
"#,
        bench_server = binaries.bench_server.display(),
    )
}

/// Boots the VM, echoes its serial console and decides from the verdict line.
fn boot(vmlinuz: &Path, initrd: &Path) -> Result<()> {
    let mut qemu = Command::new("qemu-system-x86_64");
    // One host thread for both vCPUs (thread=single): with multi-threaded TCG, QEMU 7.2 can leave
    // a vCPU running a stale translation of kernel text another vCPU just patched (static calls,
    // ftrace, kprobes all use int3-based text_poke), looping on int3 until the soft-lockup
    // watchdog fires. Seen here in about one run in three.
    qemu.args(["-accel", "tcg,thread=single", "-cpu", "max", "-m", "1024", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(KERNEL_CMDLINE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let limit = match std::env::var("TCPPROF_VM_TIME_LIMIT") {
        Ok(s) => s
            .parse()
            .with_context(|| format!("TCPPROF_VM_TIME_LIMIT={s:?}: expected seconds"))?,
        Err(_) => TIME_LIMIT_S,
    };
    let limit = Duration::from_secs(limit);
    let started = Instant::now();
    // Killed if still running when dropped (error paths, panics).
    let mut vm = OwnedChild::spawn(&mut qemu).context("starting qemu-system-x86_64")?;
    let mut stdout = vm.take_stdout().expect("stdout is piped");
    // Chunks, not lines: when the VM hangs, the unfinished line (libtest's "test NAME ... "
    // before its "ok") says where.
    let (chunks, console) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if chunks.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let echo = |line: &[u8]| {
        let line = printable(&String::from_utf8_lossy(line));
        println!("vm {:>5.1}s | {line}", started.elapsed().as_secs_f64());
        line
    };
    let mut pending = Vec::new();
    let mut verdict = None;
    'console: loop {
        let left = limit.saturating_sub(started.elapsed());
        match console.recv_timeout(left) {
            Ok(chunk) => {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Some(v) = echo(&line).trim_start().strip_prefix(VERDICT) {
                        verdict = Some(v.trim().to_string());
                        break 'console;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !pending.is_empty() {
                    echo(&pending);
                }
                vm.stop();
                bail!(
                    "no verdict from the VM within {} s (the last line above is where it was): killed it",
                    limit.as_secs()
                );
            }
        }
    }
    if verdict.is_none() && !pending.is_empty() {
        echo(&pending);
    }
    let elapsed = started.elapsed();
    // After the verdict the VM powers itself off; give it a moment, then make sure.
    let status = vm
        .wait_timeout(Duration::from_secs(20))?
        .map_or("killed after 20 s".to_string(), |s| s.to_string());
    match verdict {
        Some(v) if v == "PASS" => {
            eprintln!("vm-test: PASS (VM boot to verdict {:.1} s)", elapsed.as_secs_f64());
            Ok(())
        }
        Some(v) => bail!("the VM's tests failed: {v}"),
        None => bail!("QEMU exited ({status}) without a verdict"),
    }
}

/// A console line without its terminal control sequences (the firmware clears the screen and
/// resets the terminal), so that echoing it leaves the caller's terminal alone.
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI: ESC [ parameters, then one final byte in @..~; other escapes: ESC and one char.
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\x1b' => {
                chars.next();
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim_end().to_string()
}

fn deb_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == b"install ok installed")
}
