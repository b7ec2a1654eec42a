//! The hash chain: canonical JSON, the hash of a record, and `audit verify`.
//!
//! `hash` = hex SHA-256 of `prev_hash` (64 hex characters) followed by the
//! canonical JSON of the record without its `hash` key: keys sorted
//! bytewise at every level, no whitespace, strings escaped as serde_json
//! does. The first record of a log has `seq` 1 and a `prev_hash` of 64
//! zeros; each next record has `seq` + 1 and the previous record's `hash`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first record of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Canonical JSON of `value` (keys sorted, no whitespace).
pub fn canonical(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // Only serde_json's (UTF-8) output and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, None, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        // Scalars as serde_json writes them compactly; writing to a Vec
        // cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// An object with sorted keys, leaving `skip` out.
fn write_object(map: &Map<String, Value>, skip: Option<&str>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k.as_str());
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// Hex SHA-256 of arbitrary JSON in canonical form (`args_sha256`).
pub fn sha256_canonical(value: &Value) -> String {
    let mut text = Vec::with_capacity(256);
    write_canonical(value, &mut text);
    hex::encode(Sha256::digest(&text))
}

/// The `hash` of `record` (its own `hash` key, if any, is ignored).
pub fn record_hash(prev_hash: &str, record: &Map<String, Value>) -> String {
    let mut text = Vec::with_capacity(1024);
    write_object(record, Some("hash"), &mut text);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(&text);
    hex::encode(hasher.finalize())
}

/// Why `audit verify` failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}:{line}: {why}")]
    Broken {
        file: String,
        line: usize,
        why: String,
    },
    #[error("no audit records in the files given")]
    Empty,
}

/// What a verified chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub files: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_hash: String,
    /// The `replica` of the chain's first record (absent in older logs).
    pub replica: Option<String>,
    /// The chain's files, oldest first.
    pub paths: Vec<String>,
}

struct Line {
    line: usize,
    text: String,
}

/// One file given to `verify`, with what its first and last records say
/// about where it sits in a chain.
struct LogFile {
    file: String,
    lines: Vec<Line>,
    /// `seq`, `prev_hash` and `replica` of the first record.
    head: Option<(u64, String, Option<String>)>,
    /// `seq` and `hash` of the last record.
    tail: Option<(u64, String)>,
}

impl LogFile {
    fn read(path: &Path) -> Result<LogFile, VerifyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| VerifyError::Read {
            file: file.clone(),
            error,
        })?;
        let lines: Vec<Line> = text
            .split_inclusive('\n')
            .enumerate()
            .map(|(i, l)| Line {
                line: i + 1,
                text: l.to_owned(),
            })
            .collect();
        let parse = |line: Option<&Line>| {
            line.and_then(|l| serde_json::from_str::<Map<String, Value>>(&l.text).ok())
        };
        let head = parse(lines.first()).and_then(|r| {
            Some((
                r.get("seq")?.as_u64()?,
                r.get("prev_hash")?.as_str()?.to_owned(),
                r.get("replica").and_then(Value::as_str).map(str::to_owned),
            ))
        });
        let tail = parse(lines.last())
            .and_then(|r| Some((r.get("seq")?.as_u64()?, r.get("hash")?.as_str()?.to_owned())));
        Ok(LogFile {
            file,
            lines,
            head,
            tail,
        })
    }
}

/// Verifies the chains in `files`. Each replica writes its own chain, and a
/// chain may span several files (rotation), given in any order: a file
/// continues the one whose last record has the `seq` before its first
/// record's and the `hash` its first record names as `prev_hash`. Files
/// that continue none start a chain, which must begin at `seq` 1 with the
/// genesis `prev_hash` unless `partial`; every chain is then checked record
/// by record. One summary per chain, ordered by replica.
pub fn verify(files: &[PathBuf], partial: bool) -> Result<Vec<Summary>, VerifyError> {
    let logs: Vec<LogFile> = files
        .iter()
        .map(|p| LogFile::read(p))
        .collect::<Result<_, _>>()?;
    // Which file ends with (seq, hash).
    let mut ends: std::collections::HashMap<(u64, &str), usize> = std::collections::HashMap::new();
    for (i, log) in logs.iter().enumerate() {
        if let Some((seq, hash)) = &log.tail {
            ends.insert((*seq, hash.as_str()), i);
        }
    }
    let mut next: Vec<Option<usize>> = vec![None; logs.len()];
    let mut has_previous = vec![false; logs.len()];
    for (i, log) in logs.iter().enumerate() {
        let Some((seq, prev, _)) = &log.head else {
            continue;
        };
        let Some(&before) = seq
            .checked_sub(1)
            .and_then(|s| ends.get(&(s, prev.as_str())))
        else {
            continue;
        };
        if before == i {
            continue;
        }
        if let Some(other) = next.get(before).copied().flatten() {
            return Err(VerifyError::Broken {
                file: log.file.clone(),
                line: 1,
                why: format!(
                    "continues {} as {} does too (the same records given twice?)",
                    logs.get(before).map(|l| l.file.as_str()).unwrap_or(""),
                    logs.get(other).map(|l| l.file.as_str()).unwrap_or("")
                ),
            });
        }
        if let Some(slot) = next.get_mut(before) {
            *slot = Some(i);
        }
        if let Some(flag) = has_previous.get_mut(i) {
            *flag = true;
        }
    }
    let mut visited = vec![false; logs.len()];
    let mut summaries = Vec::new();
    // Earliest first, so the first break of a chain is the one reported.
    let mut starts: Vec<usize> = (0..logs.len()).collect();
    starts.sort_by_key(|&i| logs.get(i).and_then(|l| l.head.as_ref()).map(|h| h.0));
    for start in starts {
        let Some(log) = logs.get(start) else { continue };
        if has_previous.get(start).copied().unwrap_or(false) || log.lines.is_empty() {
            continue;
        }
        let mut chain = Vec::new();
        let mut at = Some(start);
        while let Some(i) = at {
            if visited.get(i).copied().unwrap_or(true) {
                break;
            }
            if let Some(v) = visited.get_mut(i) {
                *v = true;
            }
            chain.extend(logs.get(i));
            at = next.get(i).copied().flatten();
        }
        if let Some((seq, _, replica)) = &log.head
            && *seq > 1
        {
            // Another chain ending just before this one, from the same
            // replica: one chain cut in two by an altered record, not two.
            let cut = logs.iter().find(|other| {
                !std::ptr::eq(*other, log)
                    && other.tail.as_ref().is_some_and(|(s, _)| s + 1 == *seq)
                    && other.head.as_ref().map(|h| &h.2) == Some(replica)
            });
            if let Some(other) = cut {
                return Err(VerifyError::Broken {
                    file: log.file.clone(),
                    line: 1,
                    why: format!(
                        "prev_hash is not the hash of the last record of {} (seq {})",
                        other.file,
                        seq - 1
                    ),
                });
            }
        }
        summaries.push(verify_chain(&chain, partial)?);
    }
    // Files whose records only lead into each other (a loop) start nothing.
    if let Some(log) = logs
        .iter()
        .zip(&visited)
        .find_map(|(log, seen)| (!seen && !log.lines.is_empty()).then_some(log))
    {
        return Err(VerifyError::Broken {
            file: log.file.clone(),
            line: 1,
            why: "the file's records lead back into each other (reordered files?)".into(),
        });
    }
    if summaries.is_empty() {
        return Err(VerifyError::Empty);
    }
    summaries.sort_by(|a, b| (&a.replica, &a.paths).cmp(&(&b.replica, &b.paths)));
    Ok(summaries)
}

/// Checks one chain record by record, across its files in order.
fn verify_chain(chain: &[&LogFile], partial: bool) -> Result<Summary, VerifyError> {
    let mut expected: Option<(u64, String)> = None;
    let mut summary = Summary {
        records: 0,
        files: chain.len(),
        first_seq: 0,
        last_seq: 0,
        last_hash: String::new(),
        replica: chain
            .first()
            .and_then(|log| log.head.as_ref())
            .and_then(|h| h.2.clone()),
        paths: chain.iter().map(|log| log.file.clone()).collect(),
    };
    for (log, line) in chain
        .iter()
        .flat_map(|log| log.lines.iter().map(move |line| (log, line)))
    {
        let broken = |why: String| VerifyError::Broken {
            file: log.file.clone(),
            line: line.line,
            why,
        };
        if !line.text.ends_with('\n') {
            return Err(broken("incomplete last line (no newline)".into()));
        }
        let record: Map<String, Value> = serde_json::from_str(&line.text)
            .map_err(|e| broken(format!("not a JSON object: {e}")))?;
        let seq = record
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| broken("no seq".into()))?;
        let prev = record
            .get("prev_hash")
            .and_then(Value::as_str)
            .ok_or_else(|| broken("no prev_hash".into()))?;
        let hash = record
            .get("hash")
            .and_then(Value::as_str)
            .ok_or_else(|| broken("no hash".into()))?;
        match &expected {
            None if !partial && (seq != 1 || prev != GENESIS) => {
                return Err(broken(format!(
                    "the chain starts at seq {seq}, not at seq 1 with the genesis prev_hash \
                     (records before it are missing; --partial accepts this)"
                )));
            }
            None => summary.first_seq = seq,
            Some((want_seq, want_prev)) => {
                if seq != *want_seq {
                    return Err(broken(format!(
                        "seq {seq} where {want_seq} was expected (a record is missing, \
                         duplicated or out of order)"
                    )));
                }
                if prev != want_prev {
                    return Err(broken(
                        "prev_hash is not the previous record's hash".to_string(),
                    ));
                }
            }
        }
        let actual = record_hash(prev, &record);
        if actual != hash {
            return Err(broken(format!(
                "hash does not match the record's content (recomputed {actual})"
            )));
        }
        summary.records += 1;
        summary.last_seq = seq;
        summary.last_hash = hash.to_owned();
        expected = Some((seq + 1, hash.to_owned()));
    }
    if summary.records == 0 {
        return Err(VerifyError::Empty);
    }
    Ok(summary)
}

/// The `seq` and `hash` of the last record of a log file, if it has any.
/// A torn last line (no newline: the process died mid-write) is cut off
/// first, so the chain continues from the last complete record.
pub fn read_tail(path: &Path) -> std::io::Result<Option<(u64, String)>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut chunk = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        // Cut a torn last line off.
        let complete_end = match buf.iter().rposition(|b| *b == b'\n') {
            Some(p) => p + 1,
            None if start == 0 => 0,
            None => {
                chunk *= 2;
                continue;
            }
        };
        if complete_end < buf.len() {
            let keep = start + complete_end as u64;
            tracing::warn!(
                file = %path.display(),
                bytes = len - keep,
                "the audit log ends with an incomplete record (crash mid-write?); cutting it off"
            );
            file.set_len(keep)?;
        }
        let body = buf.get(..complete_end.saturating_sub(1)).unwrap_or(&[]);
        let line_start = match body.iter().rposition(|b| *b == b'\n') {
            Some(p) => p + 1,
            None if start == 0 => 0,
            None => {
                chunk *= 2;
                continue;
            }
        };
        let last = body.get(line_start..).unwrap_or(&[]);
        if last.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the last line of {} is not an audit record with seq and hash; \
                     run `mcp-gateway audit verify` on it, or move it aside",
                    path.display()
                ),
            )
        };
        let v: Value = serde_json::from_slice(last).map_err(|_| invalid())?;
        let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(invalid)?;
        let hash = v.get("hash").and_then(Value::as_str).ok_or_else(invalid)?;
        return Ok(Some((seq, hash.to_owned())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":1,"y":"é\n"}],"c":null}}"#).unwrap();
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":null,"d":[1,{"y":"é\n","z":1}]},"b":1}"#
        );
    }

    #[test]
    fn hash_ignores_the_hash_key_and_binds_prev() {
        let mut r = Map::new();
        r.insert("seq".into(), 1.into());
        let h1 = record_hash(GENESIS, &r);
        r.insert("hash".into(), h1.clone().into());
        assert_eq!(record_hash(GENESIS, &r), h1);
        assert_ne!(record_hash(&h1, &r), h1);
    }

    /// `n` chained records of `replica` from `seq`, after `prev`: the
    /// lines and the last hash.
    fn records(replica: &str, seq: u64, n: u64, prev: &str) -> (String, String) {
        let mut text = String::new();
        let mut prev = prev.to_owned();
        for s in seq..seq + n {
            let mut r = Map::new();
            r.insert("seq".into(), s.into());
            r.insert("prev_hash".into(), prev.clone().into());
            r.insert("replica".into(), replica.into());
            let hash = record_hash(&prev, &r);
            r.insert("hash".into(), hash.clone().into());
            text.push_str(&Value::Object(r).to_string());
            text.push('\n');
            prev = hash;
        }
        (text, prev)
    }

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("chain-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    /// Three replicas, one of them rotated into three files: given in any
    /// order, three chains verify.
    fn three_replicas(d: &Dir) -> Vec<PathBuf> {
        let write = |name: &str, text: &str| {
            let path = d.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (a, _) = records("gw-a", 1, 4, GENESIS);
        let (b1, h) = records("gw-b", 1, 3, GENESIS);
        let (b2, h) = records("gw-b", 4, 2, &h);
        let (b3, _) = records("gw-b", 6, 3, &h);
        let (c, _) = records("gw-c", 1, 1, GENESIS);
        vec![
            write("b.jsonl", &b3),
            write("a.jsonl", &a),
            write("b.jsonl.2", &b2),
            write("c.jsonl", &c),
            write("b.jsonl.1", &b1),
            write("empty.jsonl", ""),
        ]
    }

    #[test]
    fn files_of_several_replicas_verify_as_one_chain_each() {
        let d = dir("several");
        let files = three_replicas(&d);
        let chains = verify(&files, false).unwrap();
        let seen: Vec<(Option<&str>, u64, usize, u64)> = chains
            .iter()
            .map(|c| (c.replica.as_deref(), c.records, c.files, c.last_seq))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("gw-a"), 4, 1, 4),
                (Some("gw-b"), 8, 3, 8),
                (Some("gw-c"), 1, 1, 1)
            ]
        );
        let b = &chains[1].paths;
        assert!(
            b[0].ends_with("b.jsonl.1") && b[2].ends_with("b.jsonl"),
            "{b:?}"
        );
    }

    #[test]
    fn a_tampered_line_in_one_replicas_file_fails_at_that_line() {
        let d = dir("tampered");
        let files = three_replicas(&d);
        let rotated = d.0.join("b.jsonl.2");
        let text = std::fs::read_to_string(&rotated).unwrap();
        std::fs::write(&rotated, text.replacen("\"gw-b\"", "\"gw-x\"", 2)).unwrap();
        let err = verify(&files, false).unwrap_err().to_string();
        // Line 1 still names the right prev_hash, so the file stays in the
        // chain and its content fails there.
        assert!(
            err.starts_with(&format!("{}:1: hash does not match", rotated.display())),
            "{err}"
        );
    }

    #[test]
    fn a_missing_rotated_file_or_a_cut_chain_fails_at_the_next_file() {
        let d = dir("missing");
        let files: Vec<PathBuf> = three_replicas(&d)
            .into_iter()
            .filter(|f| !f.ends_with("b.jsonl.2"))
            .collect();
        let err = verify(&files, false).unwrap_err().to_string();
        assert!(
            err.contains("b.jsonl:1: the chain starts at seq 6"),
            "{err}"
        );
        assert!(verify(&files, true).is_ok(), "--partial accepts it");
        // A record whose hash was recomputed after an edit: the next file no
        // longer follows it; found even with --partial.
        let files = three_replicas(&d);
        let (b2, _) = records("gw-b", 4, 2, "f".repeat(64).as_str());
        std::fs::write(d.0.join("b.jsonl.2"), b2).unwrap();
        for partial in [false, true] {
            let err = verify(&files, partial).unwrap_err().to_string();
            assert!(
                err.contains("b.jsonl.2:1: prev_hash is not the hash of the last record of")
                    && err.contains("b.jsonl.1 (seq 3)"),
                "{err}"
            );
        }
    }

    #[test]
    fn hashes_of_existing_logs_stay_the_same() {
        // Pinned: a change to the canonical form would break every chain
        // written before it.
        let mut r = Map::new();
        r.insert("seq".into(), 1.into());
        r.insert("reason".into(), "quote \" tab \t ctl \u{1} é 1.5".into());
        r.insert("latency_us".into(), 1234.into());
        r.insert("policies".into(), serde_json::json!(["a", "b"]));
        r.insert("error_code".into(), (-32003).into());
        r.insert("ratio".into(), 0.25.into());
        assert_eq!(
            canonical(&Value::Object(r.clone())),
            r#"{"error_code":-32003,"latency_us":1234,"policies":["a","b"],"ratio":0.25,"reason":"quote \" tab \t ctl \u0001 é 1.5","seq":1}"#
        );
        assert_eq!(
            record_hash(GENESIS, &r),
            "f8af933ba388a6d0a8d37dc14ceca130db6216777ac93c8553502d554e309550"
        );
    }
}
