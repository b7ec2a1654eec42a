//! The writer thread: jobs from the bounded queue → fixture files. Files
//! are opened at a tape's first message, flushed whenever the queue runs
//! dry, and closed when the tape ends. A stateless tape quiet for longer
//! than the group window continues in a new file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::mpsc;

use super::Job;

struct Open {
    file: BufWriter<File>,
    base: Instant,
    last: Instant,
}

#[derive(Default)]
struct TapeFiles {
    sticky: Vec<Value>,
    stateless: bool,
    open: Option<Open>,
    part: u32,
}

pub(super) fn run(mut rx: mpsc::Receiver<Job>, dir: PathBuf, window: Duration) {
    let mut tapes: HashMap<Arc<str>, TapeFiles> = HashMap::new();
    while let Some(job) = rx.blocking_recv() {
        handle(job, &mut tapes, &dir, window);
        while let Ok(job) = rx.try_recv() {
            handle(job, &mut tapes, &dir, window);
        }
        for t in tapes.values_mut() {
            if let Some(open) = &mut t.open {
                let _ = open.file.flush();
            }
        }
    }
}

fn handle(job: Job, tapes: &mut HashMap<Arc<str>, TapeFiles>, dir: &Path, window: Duration) {
    match job {
        Job::Sticky {
            key,
            line,
            stateless,
        } => {
            let t = tapes.entry(key).or_default();
            t.stateless = stateless;
            if let Some(open) = &mut t.open {
                write_line(&mut open.file, &line);
            }
            t.sticky.push(line);
        }
        Job::Line { key, at, mut line } => {
            let t = tapes.entry(key.clone()).or_default();
            let quiet = t
                .open
                .as_ref()
                .is_some_and(|o| t.stateless && at.saturating_duration_since(o.last) > window);
            if quiet {
                t.open = None;
            }
            if t.open.is_none() {
                t.part += 1;
                match create(dir, &key, t.part) {
                    Ok(mut file) => {
                        for s in &t.sticky {
                            write_line(&mut file, s);
                        }
                        t.open = Some(Open {
                            file,
                            base: at,
                            last: at,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot create a fixture file; message dropped");
                        return;
                    }
                }
            }
            if let Some(open) = &mut t.open {
                let offset = at.saturating_duration_since(open.base);
                open.last = open.last.max(at);
                if let Some(obj) = line.as_object_mut() {
                    let us = u64::try_from(offset.as_micros()).unwrap_or(u64::MAX);
                    obj.insert("t_us".into(), us.into());
                }
                write_line(&mut open.file, &line);
            }
        }
        Job::Close { key } => {
            if let Some(mut t) = tapes.remove(&key)
                && let Some(open) = &mut t.open
            {
                let _ = open.file.flush();
            }
        }
        Job::Flush(done) => {
            for t in tapes.values_mut() {
                if let Some(open) = &mut t.open {
                    let _ = open.file.flush();
                }
            }
            let _ = done.send(());
        }
    }
}

fn create(dir: &Path, key: &str, part: u32) -> std::io::Result<BufWriter<File>> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let short: String = key.chars().take(12).collect();
    let path = dir.join(format!("{ms}-{short}-{part}.jsonl"));
    Ok(BufWriter::new(File::create(path)?))
}

fn write_line(file: &mut BufWriter<File>, line: &Value) {
    let mut text = line.to_string();
    text.push('\n');
    if let Err(e) = file.write_all(text.as_bytes()) {
        tracing::warn!(error = %e, "cannot write a fixture line");
    }
}
