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
}

struct Line {
    file: String,
    line: usize,
    text: String,
}

/// Verifies the chain across `files`, taken in the order of their first
/// record's `seq` (so rotated files may be given in any order). Unless
/// `partial`, the chain must start at `seq` 1 with the genesis `prev_hash`.
pub fn verify(files: &[PathBuf], partial: bool) -> Result<Summary, VerifyError> {
    let mut per_file: Vec<(u64, Vec<Line>)> = Vec::new();
    for path in files {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| VerifyError::Read {
            file: file.clone(),
            error,
        })?;
        let lines: Vec<Line> = text
            .split_inclusive('\n')
            .enumerate()
            .map(|(i, l)| Line {
                file: file.clone(),
                line: i + 1,
                text: l.to_owned(),
            })
            .collect();
        let first_seq = lines
            .first()
            .and_then(|l| serde_json::from_str::<Value>(&l.text).ok())
            .and_then(|v| v.get("seq").and_then(Value::as_u64))
            .unwrap_or(u64::MAX);
        per_file.push((first_seq, lines));
    }
    per_file.sort_by_key(|(seq, _)| *seq);
    let mut expected: Option<(u64, String)> = None;
    let mut summary = Summary {
        records: 0,
        files: files.len(),
        first_seq: 0,
        last_seq: 0,
        last_hash: String::new(),
    };
    for line in per_file.iter().flat_map(|(_, lines)| lines) {
        let broken = |why: String| VerifyError::Broken {
            file: line.file.clone(),
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
