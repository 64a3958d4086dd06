//! The `poll` model: one thread, a `poll(2)` loop (the shared `reactor`, level-triggered), `WAIT`
//! as timers of the loop.
//!
//! The `pollfd` array lives across turns (one entry per socket, updated in place when the
//! interest changes, swap-removed on close), but each `poll` call still hands the whole array
//! to the kernel and the result is found by scanning all of it: O(connections) per turn, without
//! `select`'s descriptor limit.

use super::reactor::{Interest, Poller, Reactor, Ready, Trigger};
use super::support::{ready_count, timeout_ms};
use anyhow::Result;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Serves `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> Result<()> {
    Reactor::new(listener, PollPoller::default())?.run()
}

#[derive(Default)]
struct PollPoller {
    fds: Vec<libc::pollfd>,
    /// `tokens[i]` belongs to `fds[i]`.
    tokens: Vec<u64>,
    /// The index in `fds` of each registered descriptor, by descriptor.
    slot: Vec<Option<usize>>,
}

fn events_of(interest: Interest) -> libc::c_short {
    let mut events = 0;
    if interest.read {
        events |= libc::POLLIN;
    }
    if interest.write {
        events |= libc::POLLOUT;
    }
    events
}

impl PollPoller {
    fn slot_of(&self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let fd = fd.as_raw_fd();
        self.slot
            .get(fd as usize)
            .copied()
            .flatten()
            .ok_or_else(|| io::Error::other(format!("descriptor {fd} is not registered")))
    }
}

impl Poller for PollPoller {
    fn name(&self) -> &'static str {
        "poll"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Level
    }

    fn add(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let index = fd as usize;
        if self.slot.len() <= index {
            self.slot.resize(index + 1, None);
        }
        if self.slot[index].is_some() {
            return Err(io::Error::other(format!("descriptor {fd} is already registered")));
        }
        self.slot[index] = Some(self.fds.len());
        self.fds.push(libc::pollfd {
            fd,
            events: events_of(interest),
            revents: 0,
        });
        self.tokens.push(token);
        Ok(())
    }

    fn modify(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let i = self.slot_of(fd)?;
        self.fds[i].events = events_of(interest);
        self.tokens[i] = token;
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let i = self.slot_of(fd)?;
        self.slot[fd.as_raw_fd() as usize] = None;
        self.fds.swap_remove(i);
        self.tokens.swap_remove(i);
        if let Some(moved) = self.fds.get(i) {
            self.slot[moved.fd as usize] = Some(i);
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<(u64, Ready)>) -> io::Result<()> {
        // SAFETY: the array is valid for fds.len() entries for the duration of the call.
        let n = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms(timeout),
            )
        };
        let Some(mut left) = ready_count(n)? else {
            return Ok(());
        };
        for (pfd, &token) in self.fds.iter_mut().zip(&self.tokens) {
            if left == 0 {
                break;
            }
            let revents = std::mem::take(&mut pfd.revents);
            if revents == 0 {
                continue;
            }
            left -= 1;
            let r = Ready {
                readable: revents & libc::POLLIN != 0,
                writable: revents & libc::POLLOUT != 0,
                hangup: revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
            };
            ready.push((token, r));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn registrations_survive_swap_removal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let mut poller = PollPoller::default();
        for (i, c) in clients.iter().enumerate() {
            poller.add(c.as_fd(), i as u64, Interest::READ).unwrap();
        }
        assert!(poller.add(clients[1].as_fd(), 9, Interest::READ).is_err());
        poller.remove(clients[0].as_fd()).unwrap();
        assert!(poller.remove(clients[0].as_fd()).is_err());
        // The server side writes to client 2 only: only its token comes back.
        let _first = listener.accept().unwrap();
        let _second = listener.accept().unwrap();
        let (mut third, _) = listener.accept().unwrap();
        third.write_all(b"x").unwrap();
        let mut ready = Vec::new();
        poller.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert_eq!(ready.len(), 1, "{ready:?}");
        assert_eq!(ready[0].0, 2);
        assert!(ready[0].1.readable);
        poller.modify(clients[2].as_fd(), 5, Interest::default()).unwrap();
        ready.clear();
        poller.wait(Some(Duration::ZERO), &mut ready).unwrap();
        assert!(ready.is_empty(), "{ready:?}");
    }
}
