//! The `select` model: one thread, a `select(2)` loop (the shared `reactor`, level-triggered),
//! `WAIT` as timers of the loop.
//!
//! Each turn copies the read and write `fd_set`s, hands them to the kernel, and scans every
//! descriptor up to the highest one for the result, so a turn costs O(highest fd) in both the
//! kernel and here, whatever is ready: that is the point of comparing it with `poll` and
//! `epoll`.
//!
//! **Limit:** an `fd_set` is a fixed bitmap of `FD_SETSIZE` = 1024 bits, and setting a bit at
//! or above that writes past it. So connections whose descriptor is 1024 or more are accepted
//! and closed at once, with a line on stderr (the first, then every 1000th); this model serves
//! at most about 1020 clients at a time, whatever `RLIMIT_NOFILE` allows.

use super::reactor::{Interest, Poller, Reactor, Ready, Trigger};
use super::support::ready_count;
use anyhow::Result;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// `FD_SETSIZE`: descriptors this model can watch are `0..FD_SETSIZE`.
pub const FD_SETSIZE: usize = libc::FD_SETSIZE;

/// Serves `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> Result<()> {
    Reactor::new(listener, SelectPoller::new())?.run()
}

struct SelectPoller {
    read: libc::fd_set,
    write: libc::fd_set,
    /// The token of each registered descriptor, by descriptor.
    tokens: Vec<Option<u64>>,
    /// The highest registered descriptor, -1 for none.
    max_fd: RawFd,
}

fn empty_set() -> libc::fd_set {
    // SAFETY: fd_set is a plain bitmap; FD_ZERO initialises it.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::fd_set>::uninit();
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

/// Sets or clears `fd`'s bit in `set`; `fd` must be below `FD_SETSIZE`.
fn assign(set: &mut libc::fd_set, fd: RawFd, on: bool) {
    assert!((0..FD_SETSIZE as RawFd).contains(&fd), "fd {fd} out of range");
    // SAFETY: fd is within the bitmap (checked above).
    unsafe {
        if on {
            libc::FD_SET(fd, set);
        } else {
            libc::FD_CLR(fd, set);
        }
    }
}

fn is_set(set: &libc::fd_set, fd: RawFd) -> bool {
    // SAFETY: callers pass registered descriptors, all below FD_SETSIZE.
    unsafe { libc::FD_ISSET(fd, set) }
}

impl SelectPoller {
    fn new() -> SelectPoller {
        SelectPoller {
            read: empty_set(),
            write: empty_set(),
            tokens: vec![None; FD_SETSIZE],
            max_fd: -1,
        }
    }

    fn set_interest(&mut self, fd: RawFd, interest: Interest) {
        assign(&mut self.read, fd, interest.read);
        assign(&mut self.write, fd, interest.write);
    }
}

fn checked(fd: BorrowedFd<'_>) -> io::Result<RawFd> {
    let fd = fd.as_raw_fd();
    if (0..FD_SETSIZE as RawFd).contains(&fd) {
        Ok(fd)
    } else {
        Err(io::Error::other(format!(
            "descriptor {fd} is not below FD_SETSIZE ({FD_SETSIZE})"
        )))
    }
}

impl Poller for SelectPoller {
    fn name(&self) -> &'static str {
        "select"
    }

    fn trigger(&self) -> Trigger {
        Trigger::Level
    }

    fn fd_limit(&self) -> Option<RawFd> {
        Some(FD_SETSIZE as RawFd)
    }

    fn add(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let fd = checked(fd)?;
        self.tokens[fd as usize] = Some(token);
        self.set_interest(fd, interest);
        self.max_fd = self.max_fd.max(fd);
        Ok(())
    }

    fn modify(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let fd = checked(fd)?;
        self.tokens[fd as usize] = Some(token);
        self.set_interest(fd, interest);
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = checked(fd)?;
        self.tokens[fd as usize] = None;
        self.set_interest(fd, Interest::default());
        while self.max_fd >= 0 && self.tokens[self.max_fd as usize].is_none() {
            self.max_fd -= 1;
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<(u64, Ready)>) -> io::Result<()> {
        // select overwrites its sets with the result: hand it copies.
        let mut read = self.read;
        let mut write = self.write;
        let mut tv = timeout.map(|t| {
            // Rounded up to whole microseconds, so that a timer is never fired early.
            let us = t.as_nanos().div_ceil(1000);
            libc::timeval {
                tv_sec: (us / 1_000_000).min(i32::MAX as u128) as libc::time_t,
                tv_usec: (us % 1_000_000) as libc::suseconds_t,
            }
        });
        let tv_ptr = tv.as_mut().map_or(std::ptr::null_mut(), |tv| tv as *mut libc::timeval);
        // SAFETY: the sets are valid fd_sets for max_fd + 1 <= FD_SETSIZE descriptors, tv is
        // null or valid, and all outlive the call.
        let n = unsafe { libc::select(self.max_fd + 1, &mut read, &mut write, std::ptr::null_mut(), tv_ptr) };
        let Some(mut left) = ready_count(n)? else {
            return Ok(());
        };
        for fd in 0..=self.max_fd {
            if left == 0 {
                break;
            }
            let Some(token) = self.tokens[fd as usize] else {
                continue;
            };
            let readable = is_set(&read, fd);
            let writable = is_set(&write, fd);
            left -= readable as i32 + writable as i32;
            if readable || writable {
                let r = Ready {
                    readable,
                    writable,
                    // select has no hang-up report: a reset shows as readable and the read fails.
                    hangup: false,
                };
                ready.push((token, r));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reports_readable_and_writable_and_tracks_the_highest_descriptor() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut poller = SelectPoller::new();
        poller.add(listener.as_fd(), 7, Interest::READ).expect("listener");
        let both = Interest {
            read: true,
            write: true,
        };
        poller.add(client.as_fd(), 9, both).unwrap();
        assert_eq!(poller.max_fd, client.as_raw_fd().max(listener.as_raw_fd()));
        let mut ready = Vec::new();
        poller.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
        ready.sort_by_key(|(token, _)| *token);
        // The listener has a connection queued; the client can write.
        assert_eq!(ready.len(), 2, "{ready:?}");
        assert!(ready[0].1.readable && ready[0].0 == 7);
        assert!(ready[1].1.writable && !ready[1].1.readable && ready[1].0 == 9);
        poller.remove(client.as_fd()).unwrap();
        poller.remove(listener.as_fd()).unwrap();
        assert_eq!(poller.max_fd, -1);
        ready.clear();
        poller.wait(Some(Duration::ZERO), &mut ready).unwrap();
        assert!(ready.is_empty());
    }
}
