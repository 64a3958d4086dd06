//! Listening sockets and their accept queues, from the kernel's sock_diag netlink interface (what
//! `ss -lt` reads): for a listener, the receive queue is the number of connections waiting to be
//! accepted and the send queue the backlog limit. Only listeners are dumped, so a poll stays
//! cheap however many connections are open (unlike reading /proc/net/tcp, a row per socket).
use anyhow::{Context, Result, bail, ensure};
use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A listening TCP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub inode: u32,
    /// Connections waiting in its accept queue now (`sk_ack_backlog`).
    pub queued: u32,
    /// The accept queue's limit (`sk_max_ack_backlog`: the backlog given to listen, capped at
    /// net.core.somaxconn). The kernel queues one more before it refuses.
    pub limit: u32,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
/// nlmsghdr
const HEADER_LEN: usize = 16;
/// inet_diag_req_v2
const REQUEST_LEN: usize = 56;
/// inet_diag_msg up to and including idiag_inode.
const MESSAGE_LEN: usize = 72;

/// A sock_diag netlink socket, kept open between polls.
pub struct Diag {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Diag {
    pub fn open() -> Result<Diag> {
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        ensure!(
            fd >= 0,
            "opening a sock_diag netlink socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Diag {
            fd,
            buf: vec![0; 32 * 1024],
        })
    }

    /// Every listening TCP socket, IPv4 and IPv6.
    pub fn listeners(&mut self) -> Result<Vec<Listener>> {
        let mut out = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            self.dump(family as u8, &mut out)
                .with_context(|| format!("listing TCP listeners (address family {family}) through sock_diag"))?;
        }
        Ok(out)
    }

    fn dump(&mut self, family: u8, out: &mut Vec<Listener>) -> Result<()> {
        let mut request = [0u8; HEADER_LEN + REQUEST_LEN];
        request[0..4].copy_from_slice(&((HEADER_LEN + REQUEST_LEN) as u32).to_ne_bytes());
        request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        request[6..8].copy_from_slice(&flags.to_ne_bytes());
        let body = &mut request[HEADER_LEN..];
        body[0] = family;
        body[1] = libc::IPPROTO_TCP as u8;
        body[4..8].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        // SAFETY: the buffer is valid for its length; the kernel's netlink address is implied.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
        ensure!(sent >= 0, "send: {}", std::io::Error::last_os_error());
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            ensure!(n >= 0, "recv: {}", std::io::Error::last_os_error());
            if parse_messages(&self.buf[..n as usize], out)? {
                return Ok(());
            }
        }
    }
}

/// Adds the listeners in one datagram of replies to `out`; true once the dump is complete.
fn parse_messages(mut data: &[u8], out: &mut Vec<Listener>) -> Result<bool> {
    let u16_at = |d: &[u8], at: usize| u16::from_ne_bytes([d[at], d[at + 1]]);
    let u32_at = |d: &[u8], at: usize| u32::from_ne_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
    while data.len() >= HEADER_LEN {
        let len = u32_at(data, 0) as usize;
        ensure!((HEADER_LEN..=data.len()).contains(&len), "malformed netlink message");
        let body = &data[HEADER_LEN..len];
        match u16_at(data, 4) {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = if body.len() >= 4 { -(u32_at(body, 0) as i32) } else { 0 };
                bail!("the kernel answered {}", std::io::Error::from_raw_os_error(errno));
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= MESSAGE_LEN => out.push(Listener {
                // idiag_sport, network order
                port: u16::from_be_bytes([body[4], body[5]]),
                queued: u32_at(body, 56),
                limit: u32_at(body, 60),
                inode: u32_at(body, 68),
            }),
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(false)
}

/// The kernel's count of connections refused because an accept queue was full
/// (`TcpExt: ListenOverflows`) and of all SYNs and handshakes dropped by listeners
/// (`ListenDrops`, overflows included), machine-wide, from /proc/net/netstat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenCounters {
    pub overflows: u64,
    pub drops: u64,
}

impl ListenCounters {
    pub fn read() -> Result<ListenCounters> {
        let path = "/proc/net/netstat";
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        ListenCounters::parse(&text).with_context(|| format!("no TcpExt ListenOverflows and ListenDrops in {path}"))
    }

    /// The file pairs a line of names with a line of values, per protocol.
    fn parse(text: &str) -> Option<ListenCounters> {
        let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = (tcp_ext.next()?, tcp_ext.next()?);
        let value = |wanted: &str| {
            let at = names.split_whitespace().position(|n| n == wanted)?;
            values.split_whitespace().nth(at)?.parse().ok()
        };
        Some(ListenCounters {
            overflows: value("ListenOverflows")?,
            drops: value("ListenDrops")?,
        })
    }

    pub fn since(self, start: ListenCounters) -> ListenCounters {
        ListenCounters {
            overflows: self.overflows.saturating_sub(start.overflows),
            drops: self.drops.saturating_sub(start.drops),
        }
    }
}

/// The socket inodes among `pid`'s open descriptors.
pub fn socket_inodes(pid: u32) -> HashSet<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// The listeners `pids` hold open.
pub fn listeners_of(pids: &[u32]) -> Result<Vec<Listener>> {
    let inodes: HashSet<u32> = pids.iter().flat_map(|&pid| socket_inodes(pid)).collect();
    Ok(Diag::open()?
        .listeners()?
        .into_iter()
        .filter(|l| inodes.contains(&l.inode))
        .collect())
}

/// The processes holding the listener on `port` (a master and the workers it forked share it),
/// found by the listener's inode among every process's descriptors (needs the right to read
/// them: root, or the same user).
pub fn processes_listening_on(port: u16) -> Result<Vec<u32>> {
    let inodes: HashSet<u32> = Diag::open()?
        .listeners()?
        .into_iter()
        .filter(|l| l.port == port)
        .map(|l| l.inode)
        .collect();
    ensure!(!inodes.is_empty(), "nothing listens on port {port}");
    let pids = std::fs::read_dir("/proc")
        .context("reading /proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    let holders: Vec<u32> = pids
        .filter(|&pid| socket_inodes(pid).iter().any(|inode| inodes.contains(inode)))
        .collect();
    ensure!(
        !holders.is_empty(),
        "no process we may look into holds the listener on port {port}"
    );
    Ok(holders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sees_a_listeners_queue_and_limit() {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())
            .unwrap();
        socket.listen(7).unwrap();
        let listener: TcpListener = socket.into();
        let port = listener.local_addr().unwrap().port();
        // Three connections complete their handshake and wait to be accepted.
        let _clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let ours = listeners_of(&[std::process::id()]).unwrap();
        let l = ours.iter().find(|l| l.port == port).expect("our listener is listed");
        assert_eq!((l.queued, l.limit), (3, 7), "{l:?}");
        assert_eq!(processes_listening_on(port).unwrap(), [std::process::id()]);
    }

    #[test]
    fn reads_listen_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 1 22 333\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        let c = ListenCounters::parse(text).unwrap();
        assert_eq!((c.overflows, c.drops), (22, 333));
        assert!(ListenCounters::parse("IpExt: InNoRoutes\nIpExt: 0\n").is_none());
        ListenCounters::read().expect("this kernel has them");
    }

    #[test]
    fn rejects_truncated_replies() {
        let mut out = Vec::new();
        assert!(parse_messages(&[200, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut out).is_err());
        assert!(!parse_messages(&[], &mut out).unwrap());
    }
}
