//! Builds profiler-ebpf for the BPF target with the nightly toolchain and bpf-linker
//! (aya-build), so that a plain `cargo build` yields a profiler with its programs embedded.
//! `cargo xtask setup` installs what this needs.
fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiler-ebpf");
    let package = aya_build::Package {
        name: "profiler-ebpf",
        root_dir: root,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
