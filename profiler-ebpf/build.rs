//! The programs are linked again when bpf-linker changes: profiler's build script names the
//! linker it found (path, size, modification time) in TCPPROF_BPF_LINKER, and cargo rebuilds a
//! package whose build script reruns.
fn main() {
    println!("cargo:rerun-if-env-changed=TCPPROF_BPF_LINKER");
}
