//! Test hosts: network namespaces this test makes, each with one address on a shared link (a
//! bridge in a namespace of its own, the switch), standing in for machines. Everything is
//! removed when the [`Hosts`] drop, a failed assertion included. Traffic stays among the
//! addresses made here: the namespaces have no route anywhere else.
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The hosts' subnet: host i is 10.211.0.(i+1)/24.
pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 211, 0, i as u8 + 1)
}

pub struct Hosts {
    switch: String,
    pub hosts: Vec<Host>,
}

pub struct Host {
    pub ns: String,
    pub addr: Ipv4Addr,
}

static SETS: AtomicUsize = AtomicUsize::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip ({e}): `cargo xtask test` installs iproute2"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    /// `n` hosts on one link.
    pub fn new(n: usize) -> Hosts {
        let set = format!("tcpprof-{}-{}", std::process::id(), SETS.fetch_add(1, Ordering::SeqCst));
        let switch = format!("{set}-sw");
        let mut hosts = Hosts {
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 0..n {
            let ns = format!("{set}-h{i}");
            ip(&["netns", "add", &ns]);
            hosts.hosts.push(Host {
                ns: ns.clone(),
                addr: host_addr(i),
            });
            let port = format!("p{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", host_addr(i)), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        hosts
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth pair, and with it the other end.
        for ns in self.hosts.iter().map(|h| &h.ns).chain([&self.switch]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Host {
    /// `program` run in this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, program]);
        cmd
    }

    /// Runs `f` on a thread that has entered this host's namespace (setns moves only the
    /// calling thread).
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    // SAFETY: a valid namespace descriptor; this thread alone moves.
                    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Waits until something accepts connections at `addr:port`, seen from this host (10 s).
    pub fn wait_for(&self, addr: Ipv4Addr, port: u16) {
        self.run_in(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect_timeout(&(addr, port).into(), Duration::from_millis(200)).is_err() {
                assert!(Instant::now() < deadline, "nothing listens on {addr}:{port} after 10 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    }
}
