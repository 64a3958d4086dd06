//! HdrHistogram interval logs (V2, compressed histograms): written one interval at a time while
//! a run goes, read back and added up by `tcpprof merge`. HistogramLogProcessor and the other
//! HdrHistogram tools read what this writes.
use crate::live::{self, Sink};
use anyhow::{Context, Result, anyhow};
use bench::load::{Interval, LatencyHistogram};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// An interval log being written: each interval goes out as it ends, so a run cut short keeps
/// what it measured.
pub struct HlogWriter {
    file: BufWriter<File>,
    serializer: V2DeflateSerializer,
    tag: String,
    /// Wall-clock time of the run's start, written in the header with the first interval.
    start: Option<SystemTime>,
}

impl HlogWriter {
    /// Creates `path`; `tag` (the agent's name) marks every histogram in it.
    pub fn create(path: &Path, tag: &str) -> Result<HlogWriter> {
        anyhow::ensure!(
            Tag::new(tag).is_some(),
            "agent name {tag:?}: a tag has no commas, spaces or newlines"
        );
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(HlogWriter {
            file: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            tag: tag.to_string(),
            start: None,
        })
    }

    /// Writes one interval. `run_start` is when the run's clock started.
    pub fn write(&mut self, interval: &Interval, run_start: SystemTime) -> Result<()> {
        let mut builder = IntervalLogWriterBuilder::new();
        if self.start.is_none() {
            self.start = Some(run_start);
            builder
                .add_comment("tcpprof interval log: request latencies in microseconds")
                .with_start_time(run_start);
        }
        let mut log = builder
            .begin_log_with(&mut self.file, &mut self.serializer)
            .map_err(|e| anyhow!("writing the log header: {e}"))?;
        log.write_histogram(
            interval.latency.inner(),
            interval.start,
            interval.length,
            Tag::new(&self.tag),
        )
        .map_err(|e| anyhow!("writing interval {}: {e}", interval.index))?;
        self.file.flush().context("writing the interval log")
    }
}

/// An interval log as a sink of the live loop: the load's intervals, each written as it ends. A
/// failure to write does not stop the load; the first is kept for the command to report at the
/// end.
pub struct HlogSink {
    writer: HlogWriter,
    /// The run's start by the wall clock: when its first interval ended, less its length.
    run_start: Option<SystemTime>,
    pub failure: Option<anyhow::Error>,
}

impl HlogSink {
    pub fn new(writer: HlogWriter) -> HlogSink {
        HlogSink {
            writer,
            run_start: None,
            failure: None,
        }
    }
}

impl Sink for HlogSink {
    fn take(&mut self, interval: &live::Interval) {
        let live::Interval::Load(i) = interval else { return };
        let start = *self.run_start.get_or_insert_with(|| started_before(i.start + i.length));
        if let Err(e) = self.writer.write(i, start) {
            self.failure.get_or_insert(e);
        }
    }
}

/// Every histogram in the logs at `paths`, added up (HdrHistogram's add: the exact union), and
/// how many intervals went into it.
pub fn merge(paths: &[impl AsRef<Path>]) -> Result<(LatencyHistogram, usize)> {
    let mut total = LatencyHistogram::new();
    let mut intervals = 0;
    let mut deserializer = Deserializer::new();
    for path in paths {
        let path = path.as_ref();
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for entry in IntervalLogIterator::new(&data) {
            let entry = entry.map_err(|e| anyhow!("{}: not an interval log ({e:?})", path.display()))?;
            let LogEntry::Interval(interval) = entry else { continue };
            let bytes = base64_decode(interval.encoded_histogram())
                .with_context(|| format!("{}: a histogram that is not base64", path.display()))?;
            let h: hdrhistogram::Histogram<u64> = deserializer
                .deserialize(&mut bytes.as_slice())
                .map_err(|e| anyhow!("{}: a histogram that does not decode ({e:?})", path.display()))?;
            total.merge(&LatencyHistogram::from_hdr(h));
            intervals += 1;
        }
    }
    Ok((total, intervals))
}

/// Standard base64, as the log encodes its histograms.
fn base64_decode(text: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

/// When a run that ended now and lasted `elapsed` started, by the wall clock.
pub fn started_before(elapsed: Duration) -> SystemTime {
    SystemTime::now().checked_sub(elapsed).unwrap_or(SystemTime::UNIX_EPOCH)
}
