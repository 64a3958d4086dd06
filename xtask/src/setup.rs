//! `cargo xtask setup`: installs what building and loading the eBPF programs needs, idempotently.
//! Each step checks first, so a machine that has everything passes in well under a second.
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian packages bpf-linker is built against (see DESIGN.md, "Facts about the machines").
const LLVM_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev", "libzstd-dev", "libxml2-dev"];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";

struct Step {
    name: &'static str,
    present: fn() -> bool,
    install: fn() -> Result<()>,
    /// What to run by hand when `install` cannot (not root, no network).
    manual: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        name: "nightly toolchain",
        present: || succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])),
        install: || run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"])),
        manual: "rustup toolchain install nightly --profile minimal",
    },
    Step {
        name: "rust-src for nightly",
        present: || {
            output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))
                .is_some_and(|out| out.lines().any(|l| l.starts_with("rust-src")))
        },
        install: || run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"])),
        manual: "rustup component add rust-src --toolchain nightly",
    },
    Step {
        name: "rustfmt and clippy",
        present: || {
            succeeds(Command::new("cargo").args(["fmt", "--version"]))
                && succeeds(Command::new("cargo").args(["clippy", "--version"]))
        },
        install: || run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"])),
        manual: "rustup component add rustfmt clippy",
    },
    Step {
        name: "LLVM 22 development packages",
        present: || LLVM_PACKAGES.iter().all(|p| deb_installed(p)),
        install: || apt_install(LLVM_PACKAGES),
        manual: "sudo apt-get update && sudo apt-get install -y llvm-22-dev libpolly-22-dev libzstd-dev libxml2-dev",
    },
    Step {
        name: "bpf-linker built against LLVM 22",
        present: bpf_linker_present,
        install: install_bpf_linker,
        manual: "PATH=/usr/lib/llvm-22/bin:$PATH LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
                 cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22",
    },
];

/// Runs every step, printing one line each. Fails on the first step that cannot be done,
/// saying what to run by hand.
pub fn setup() -> Result<()> {
    for step in STEPS {
        if (step.present)() {
            eprintln!("setup: {:<34} ok", step.name);
            continue;
        }
        eprintln!("setup: {:<34} installing...", step.name);
        if let Err(err) = (step.install)() {
            bail!(
                "setup: could not install {}: {err:#}\n  run by hand: {}",
                step.name,
                step.manual
            );
        }
        if !(step.present)() {
            bail!(
                "setup: {} still missing after install\n  run by hand: {}",
                step.name,
                step.manual
            );
        }
        eprintln!("setup: {:<34} installed", step.name);
    }
    Ok(())
}

/// The version of Debian's nginx package, whose source [`source_nginx`] builds.
const NGINX_VERSION: &str = "1.22.1";
const NGINX_SOURCE: &str = "http://deb.debian.org/debian/pool/main/n/nginx/nginx_1.22.1.orig.tar.gz";
const NGINX_SOURCE_SHA256: &str = "9ebb333a9e82b952acd3e2b4aeb1d4ff6406f72491bab6cd9fe69f0dea737f31";

/// nginx built from the source of Debian's package as a user builds it (`./configure && make`:
/// symbols kept, `-O` without frame pointers), for the tests: a server nobody here wrote whose
/// stacks must be unwound from CFI and whose static functions (ngx_worker_process_cycle) have
/// names, which Debian's stripped binary does not keep. Built once, into target/peers (about 15 s).
pub fn source_nginx(root: &Path) -> Result<PathBuf> {
    let dir = root.join(format!("target/peers/nginx-{NGINX_VERSION}"));
    let binary = dir.join("objs/nginx");
    if binary.is_file() {
        eprintln!("setup: {:<34} ok", "nginx built from source");
        return Ok(binary);
    }
    eprintln!("setup: {:<34} building...", "nginx built from source");
    apt_install(&["curl", "make", "gcc", "libc6-dev"])?;
    let peers = root.join("target/peers");
    std::fs::create_dir_all(&peers)?;
    let tarball = peers.join(format!("nginx-{NGINX_VERSION}.tar.gz"));
    run(Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location", "-o"])
        .arg(&tarball)
        .arg(NGINX_SOURCE))
    .context("downloading nginx's source from Debian")?;
    let sum = stdout_of(Command::new("sha256sum").arg(&tarball))?;
    if !sum.starts_with(NGINX_SOURCE_SHA256) {
        bail!("{} has sha256 {sum}, expected {NGINX_SOURCE_SHA256}", tarball.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .args(["--strip-components=1", "-C"])
        .arg(&dir))?;
    // The HTTP rewrite and gzip modules would need PCRE and zlib: static files need neither.
    let quiet = |cmd: &mut Command| {
        let out = cmd
            .current_dir(&dir)
            .output()
            .with_context(|| format!("starting {cmd:?}"))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    quiet(Command::new("./configure").args(["--without-http_rewrite_module", "--without-http_gzip_module"]))?;
    quiet(Command::new("make").args(["-j2"]))?;
    if !binary.is_file() {
        bail!("building nginx made no {}", binary.display());
    }
    eprintln!("setup: {:<34} built", "nginx built from source");
    Ok(binary)
}

/// Installs Debian packages that are missing (benchmark peers such as redis-server).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !deb_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing packages {missing:?}: run `sudo apt-get install -y {}`",
            missing.join(" ")
        );
    }
    eprintln!("setup: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    apt(&["update", "-q"])?;
    apt(&[&["install", "-y", "-q", "--no-install-recommends"], &missing[..]].concat())
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

fn bpf_linker_present() -> bool {
    let Some(version) = output(Command::new("bpf-linker").arg("--version")) else {
        return false;
    };
    // A bpf-linker linked against another LLVM builds objects this kernel's loader may reject
    // in confusing ways; rebuild rather than guess.
    let linked_llvm_22 = which("bpf-linker")
        .and_then(|path| output(Command::new("ldd").arg(path)))
        .is_some_and(|libs| libs.contains("libLLVM.so.22"));
    version.contains(BPF_LINKER_VERSION) && linked_llvm_22
}

fn install_bpf_linker() -> Result<()> {
    let path = format!("{LLVM_PREFIX}/bin:{}", std::env::var("PATH").unwrap_or_default());
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--force", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("PATH", path)
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX))
}

fn which(program: &str) -> Option<String> {
    output(Command::new("sh").args(["-c", &format!("command -v {program}")])).map(|s| s.trim().to_string())
}

fn deb_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status == "install ok installed")
}

/// Runs a command with its output on our stderr; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdout(Stdio::inherit())
        .status()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    output(cmd).is_some()
}

/// The stdout of a command that exited 0, or None.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The stdout of a command that exited 0 (its stderr goes to ours).
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
