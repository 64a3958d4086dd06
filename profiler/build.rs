//! Builds profiler-ebpf for the BPF target with the nightly toolchain and bpf-linker
//! (aya-build), so that a plain `cargo build` yields a profiler with its programs embedded.
//! `cargo xtask setup` installs what this needs.
fn main() -> anyhow::Result<()> {
    // A new bpf-linker (say, built against another LLVM) links another object: build it again,
    // as aya-template's build script does. This script reruns when the linker changes, and the
    // inner build of profiler-ebpf sees the linker's identity change (its own build script).
    if let Some(linker) = on_path("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
        let identity = std::fs::metadata(&linker).map(|m| (m.len(), m.modified().ok()));
        // SAFETY: a build script is single-threaded; the variable is read by the cargo it starts.
        unsafe { std::env::set_var("TCPPROF_BPF_LINKER", format!("{} {identity:?}", linker.display())) };
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiler-ebpf");
    let package = aya_build::Package {
        name: "profiler-ebpf",
        root_dir: root,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}

/// Where `program` is on PATH, as the shell would find it.
fn on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
