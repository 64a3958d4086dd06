//! The one live loop of a run or a profile window: it waits out the window (or the load), hands
//! every interval to the sinks the command asked for (interval lines, the interval log, /metrics,
//! the timeline's points), and, on a profiling [`Session`], cuts the kernel's counts into
//! intervals of their own and reads the targets' mappings again now and then. `tcpprof profile`,
//! `bench` and `bench --profile` all run it; each sink takes an [`Interval`].
use crate::breakdown::Breakdown;
use crate::session::Session;
use crate::totals::Totals;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// One interval, as every sink gets it.
pub enum Interval<'a> {
    /// The load generator's: requests, errors and latencies in it.
    Load(&'a bench::load::Interval),
    /// The profile's: the server's breakdown over it, ending `end` after the window's start, and
    /// the kernel's totals since attach.
    Profile {
        end: Duration,
        breakdown: &'a Breakdown,
        totals: &'a Totals,
    },
}

/// Where intervals go as the window runs.
pub trait Sink {
    fn take(&mut self, interval: &Interval);

    /// The server's processes, once they are known (before the first interval).
    fn watch(&mut self, _pids: &[u32]) {}
}

/// What a load generator's thread tells the loop.
pub enum Event {
    /// One of its intervals ended.
    Interval(Box<bench::load::Interval>),
    /// Every connection is open and the measured load starts: the session's signals start over,
    /// then the loop answers.
    Opened(Sender<()>),
}

/// Why a window ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Its length passed.
    Elapsed,
    /// The load ended (its thread hung up).
    LoadDone,
    /// The command being profiled exited.
    Exited,
    /// SIGINT or SIGTERM.
    Signal(i32),
}

/// The sinks of one run, and the length of its intervals.
pub struct Live<'a> {
    pub interval: Duration,
    sinks: Vec<&'a mut dyn Sink>,
}

/// How often the loop looks at the clock and at what may end the window.
const TICK: Duration = Duration::from_millis(50);

impl<'a> Live<'a> {
    /// One-second intervals, no sink yet.
    pub fn new() -> Live<'a> {
        Live {
            interval: Duration::from_secs(1),
            sinks: Vec::new(),
        }
    }

    pub fn add(&mut self, sink: &'a mut dyn Sink) {
        self.sinks.push(sink);
    }

    /// Tells the sinks which processes serve (the run's server, the profiled targets).
    pub fn watching(&mut self, pids: &[u32]) {
        for sink in &mut self.sinks {
            sink.watch(pids);
        }
    }

    /// Whether any sink takes intervals (a load then cuts its run into them).
    pub fn wanted(&self) -> bool {
        !self.sinks.is_empty()
    }

    fn hand(&mut self, interval: &Interval) {
        for sink in &mut self.sinks {
            sink.take(interval);
        }
    }

    /// Runs the window until `window` has passed, the load's thread hangs up `events`, or
    /// `ended` (asked every 50 ms) says why it ends sooner. Meanwhile the load's intervals go to
    /// the sinks as they come and, with a `session`, the profile's every [`Live::interval`]; the
    /// last profile interval, cut short, goes too.
    pub fn run(
        &mut self,
        mut session: Option<&mut Session>,
        events: &Receiver<Event>,
        window: Option<Duration>,
        mut ended: impl FnMut() -> Option<End>,
    ) -> End {
        let start = Instant::now();
        let mut refreshed = start;
        // The totals at the last profile interval's end, and when it ended.
        let mut last = match &session {
            Some(s) if self.wanted() => s.totals().ok().map(|t| (t, start)),
            _ => None,
        };
        let end = loop {
            if let Some(end) = ended() {
                break end;
            }
            let left = window.map_or(Duration::MAX, |w| w.saturating_sub(start.elapsed()));
            if left.is_zero() {
                break End::Elapsed;
            }
            match events.recv_timeout(left.min(TICK)) {
                Ok(Event::Interval(i)) => self.hand(&Interval::Load(&i)),
                Ok(Event::Opened(ack)) => {
                    if let Some(s) = session.as_deref_mut() {
                        s.restart_signals();
                    }
                    let _ = ack.send(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break End::LoadDone,
            }
            let Some(session) = session.as_deref_mut() else {
                continue;
            };
            if last.as_ref().is_some_and(|(_, began)| began.elapsed() >= self.interval) {
                self.profile_interval(session, &mut last, start);
            }
            // Soon after the start (a command has just mapped its program and libraries), then
            // every second.
            let every = (start.elapsed() / 4).clamp(TICK, Duration::from_secs(1));
            if refreshed.elapsed() >= every {
                session.refresh();
                refreshed = Instant::now();
            }
        };
        // What the load sent before it hung up, and the last profile interval, cut short.
        for event in events.try_iter() {
            if let Event::Interval(i) = event {
                self.hand(&Interval::Load(&i));
            }
        }
        if let Some(session) = session
            && last.as_ref().is_some_and(|(_, began)| began.elapsed() >= TICK)
        {
            self.profile_interval(session, &mut last, start);
        }
        end
    }

    /// Hands the sinks the breakdown of what was counted since `last` (the totals then, and
    /// when), and moves `last` to now.
    fn profile_interval(&mut self, session: &Session, last: &mut Option<(Totals, Instant)>, start: Instant) {
        let (Some((before, began)), Ok(totals)) = (last.as_mut(), session.totals()) else {
            return;
        };
        let ended = Instant::now();
        if let Ok(breakdown) = session.breakdown_since(before, &totals, ended - *began) {
            self.hand(&Interval::Profile {
                end: ended - start,
                breakdown: &breakdown,
                totals: &totals,
            });
        }
        (*before, *began) = (totals, ended);
    }
}

impl Default for Live<'_> {
    fn default() -> Self {
        Live::new()
    }
}
