//! The one writer of the audit log: a thread (file I/O blocks) draining the
//! bounded queue in batches.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::chain::{self, GENESIS};
use super::{AuditError, AuditStats, Entry};
use crate::config::{AuditConfig, AuditPath, Fsync};

/// Fewest records the writer may take between two syncs with
/// `fsync = "batch"`; it takes up to the queue depth when that is larger,
/// so a slow sync never leaves the queue full while the writer idles.
const MIN_BATCH: usize = 512;

/// Shortest time between the starts of two batches while records keep
/// coming (group commit). Under load the writer waits out the rest of this
/// before draining the queue again, so one write and one sync cover every
/// record of the interval instead of a wake-up, a write and a sync per
/// handful of records; an idle writer takes the next record at once. The
/// queue keeps the records meanwhile, so nothing is dropped, and 4096 queue
/// slots cover 5 ms at 800,000 records per second. In a virtual machine a
/// sync costs the host a trip to its disk, so 200 a second at most.
const LINGER: Duration = Duration::from_millis(5);

enum Sink {
    Stdout(std::io::Stdout),
    Syslog(super::syslog::Syslog),
    File {
        path: PathBuf,
        file: std::io::BufWriter<File>,
        bytes: u64,
        /// Regular file: rotation and syncing apply (not to a FIFO).
        regular: bool,
    },
}

struct Writer {
    sink: Sink,
    fsync: Fsync,
    rotate_bytes: Option<u64>,
    /// Most records taken from the queue before a flush/sync.
    batch: usize,
    seq: u64,
    prev_hash: String,
    stats: Arc<AuditStats>,
}

pub(super) fn spawn(
    config: &AuditConfig,
    rx: mpsc::Receiver<Entry>,
    stats: Arc<AuditStats>,
) -> Result<(), AuditError> {
    let (sink, tail) = match &config.path {
        AuditPath::Stdout => (Sink::Stdout(std::io::stdout()), None),
        AuditPath::Syslog { addr, checkpoint } => {
            let (sink, tail) = super::syslog::Syslog::open(addr, checkpoint).map_err(|error| {
                AuditError::Open {
                    path: checkpoint.display().to_string(),
                    error,
                }
            })?;
            (Sink::Syslog(sink), tail)
        }
        AuditPath::File(path) => {
            let open_error = |error| AuditError::Open {
                path: path.display().to_string(),
                error,
            };
            let regular = std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(true);
            let tail = if regular {
                match chain::read_tail(path).map_err(open_error)? {
                    Some(t) => Some(t),
                    // An empty (or new) file after a rotation: the chain
                    // continues from the newest rotated file.
                    None => match newest_rotated(path) {
                        Some(rotated) => chain::read_tail(&rotated).map_err(open_error)?,
                        None => None,
                    },
                }
            } else {
                None
            };
            let file = open_append(path).map_err(open_error)?;
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            (
                Sink::File {
                    path: path.clone(),
                    file: std::io::BufWriter::with_capacity(64 * 1024, file),
                    bytes,
                    regular,
                },
                tail,
            )
        }
    };
    let (seq, prev_hash) = tail.unwrap_or((0, GENESIS.to_owned()));
    stats.last_seq.store(seq, Ordering::Relaxed);
    if seq > 0 {
        tracing::info!(seq, "audit log: continuing the hash chain");
    }
    let writer = Writer {
        sink,
        fsync: config.fsync,
        rotate_bytes: config.rotate_bytes,
        batch: config.queue_depth.max(MIN_BATCH),
        seq,
        prev_hash,
        stats,
    };
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|error| AuditError::Open {
            path: "(writer thread)".into(),
            error,
        })?;
    Ok(())
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// `PATH.N` siblings of a rotated log, newest (largest N) first.
fn rotated_siblings(path: &Path) -> Vec<(u64, PathBuf)> {
    let (Some(dir), Some(name)) = (
        path.parent().map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        }),
        path.file_name().and_then(|n| n.to_str()),
    ) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file_name = e.file_name();
            let n = file_name.to_str()?.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

fn newest_rotated(path: &Path) -> Option<PathBuf> {
    rotated_siblings(path).into_iter().next().map(|(_, p)| p)
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        let mut last_batch: Option<Instant> = None;
        while let Some(first) = rx.blocking_recv() {
            // A flush is waited on: answer it without lingering.
            if let (Some(last), Entry::Record(_)) = (last_batch, &first) {
                let since = last.elapsed();
                if since < LINGER {
                    std::thread::sleep(LINGER - since);
                }
            }
            let started = Instant::now();
            last_batch = Some(started);
            let mut next = Some(first);
            let mut written = 0usize;
            while let Some(entry) = next.take() {
                match entry {
                    Entry::Record(record) => {
                        self.write_record(*record);
                        written += 1;
                    }
                    Entry::Flush(done) => waiting.push(done),
                }
                if written < self.batch {
                    next = rx.try_recv().ok();
                }
            }
            self.end_batch();
            if written > 0 {
                self.stats.write_seconds.observe(started.elapsed());
            }
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
        self.end_batch();
        tracing::info!(
            seq = self.seq,
            hash = %self.prev_hash,
            "audit log closed"
        );
    }

    fn write_record(&mut self, record: super::line::Fields) {
        let seq = self.seq + 1;
        let hash = record.hash(seq, &self.prev_hash);
        let line = record.written(seq, &self.prev_hash, &hash);
        self.rotate_if_needed(line.len() as u64);
        let mut delay = Duration::from_millis(100);
        // Never drop: a failing sink blocks the writer (and, through the
        // full queue, the requests) until it works again.
        while let Err(e) = self.write_line(&line) {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot write the audit log; retrying");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        self.seq = seq;
        self.prev_hash = hash;
        self.stats.written.fetch_add(1, Ordering::Relaxed);
        self.stats.last_seq.store(seq, Ordering::Relaxed);
        if self.fsync == Fsync::Always {
            self.sync();
        }
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(out) => out.lock().write_all(line),
            Sink::Syslog(syslog) => syslog.push(line),
            Sink::File { file, bytes, .. } => {
                file.write_all(line)?;
                *bytes += line.len() as u64;
                Ok(())
            }
        }
    }

    fn end_batch(&mut self) {
        match self.fsync {
            Fsync::Never => self.flush(),
            Fsync::Batch | Fsync::Always => self.sync(),
        }
    }

    fn flush(&mut self) {
        if let Sink::Syslog(syslog) = &mut self.sink {
            // Never drop: retry until the collector has every frame, then
            // move the checkpoint past them.
            let mut delay = Duration::from_millis(100);
            while let Err(e) = syslog.send() {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot send audit records to the syslog collector; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            if let Err(e) = syslog.checkpoint(self.seq, &self.prev_hash) {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot write the audit checkpoint");
            }
            return;
        }
        let result = match &mut self.sink {
            Sink::Stdout(out) => out.lock().flush(),
            Sink::File { file, .. } => file.flush(),
            Sink::Syslog(_) => Ok(()),
        };
        if let Err(e) = result {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot flush the audit log");
        }
    }

    fn sync(&mut self) {
        self.flush();
        if let Sink::File {
            file,
            regular: true,
            ..
        } = &mut self.sink
            && let Err(e) = file.get_ref().sync_data()
        {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot sync the audit log");
        }
    }

    /// Moves a full log aside as `PATH.N` and starts a new one.
    fn rotate_if_needed(&mut self, next_line: u64) {
        let Some(max) = self.rotate_bytes else { return };
        let Sink::File {
            path,
            bytes,
            regular: true,
            ..
        } = &self.sink
        else {
            return;
        };
        if *bytes == 0 || *bytes + next_line <= max {
            return;
        }
        let path = path.clone();
        self.sync();
        let n = rotated_siblings(&path)
            .first()
            .map(|(n, _)| n + 1)
            .unwrap_or(1);
        let mut rotated = path.clone().into_os_string();
        rotated.push(format!(".{n}"));
        let rotated = PathBuf::from(rotated);
        if let Err(e) = std::fs::rename(&path, &rotated) {
            tracing::error!(error = %e, "cannot rotate the audit log; writing on");
            return;
        }
        match open_append(&path) {
            Ok(file) => {
                tracing::info!(rotated = %rotated.display(), seq = self.seq, "audit log rotated");
                self.sink = Sink::File {
                    path,
                    file: std::io::BufWriter::with_capacity(64 * 1024, file),
                    bytes: 0,
                    regular: true,
                };
            }
            Err(e) => {
                // Keep writing to the renamed file rather than lose records.
                tracing::error!(error = %e, "cannot open a new audit log after rotation");
            }
        }
    }
}
