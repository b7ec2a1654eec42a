//! The syslog sink: each record is one RFC 5424 message (facility "log
//! audit", severity info; the record's JSON is the message) sent to a
//! collector over TCP with octet-counted framing (RFC 6587), which is what
//! rsyslog, syslog-ng and most SIEM forwarders accept.
//!
//! Nothing is dropped: frames are kept until a flush wrote them to the
//! socket; a failed write reconnects and sends them again (a collector may
//! then see a record twice, with the same `seq` and `hash`). The chain's
//! position is kept in a checkpoint file after every flush, so a restart
//! continues the chain the collector holds.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// <13 (log audit) × 8 + 6 (info)>, version 1.
const PRI_VERSION: &str = "<110>1";
/// Frames held before they are sent without waiting for the batch's end.
const SEND_AT: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Syslog {
    addr: String,
    conn: Option<TcpStream>,
    pending: Vec<u8>,
    checkpoint: PathBuf,
    host: String,
    pid: String,
}

impl Syslog {
    /// The sink, and the chain position of the checkpoint (if any).
    pub(super) fn open(
        addr: &str,
        checkpoint: &Path,
    ) -> std::io::Result<(Syslog, Option<(u64, String)>)> {
        let tail = match std::fs::read_to_string(checkpoint) {
            Ok(text) => Some(parse_checkpoint(&text).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is not an audit checkpoint (\"SEQ HASH\")",
                        checkpoint.display()
                    ),
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        // RFC 5424: printable ASCII, else the nil value.
        let host = super::hostname()
            .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "-".into());
        Ok((
            Syslog {
                addr: addr.to_owned(),
                conn: None,
                pending: Vec::with_capacity(SEND_AT * 2),
                checkpoint: checkpoint.to_owned(),
                host,
                pid: std::process::id().to_string(),
            },
            tail,
        ))
    }

    /// Queues one record (its JSON line, newline included).
    pub(super) fn push(&mut self, line: &[u8]) -> std::io::Result<()> {
        let json = line.strip_suffix(b"\n").unwrap_or(line);
        let ts = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "-".into());
        let header = format!(
            "{PRI_VERSION} {ts} {} mcp-gateway {} audit - ",
            self.host, self.pid
        );
        let len = header.len() + json.len();
        self.pending
            .extend_from_slice(format!("{len} {header}").as_bytes());
        self.pending.extend_from_slice(json);
        // Sent early when much is queued; a failure here is retried by the
        // batch's flush (the frame is queued either way, so it must not be
        // pushed again).
        if self.pending.len() >= SEND_AT
            && let Err(e) = self.send()
        {
            tracing::debug!(error = %e, "syslog collector unreachable; the batch's flush retries");
        }
        Ok(())
    }

    /// Writes every queued frame to the collector (connecting first when
    /// needed); on failure the frames stay queued for the next attempt.
    pub(super) fn send(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&self.addr)?
                    .next()
                    .ok_or_else(|| {
                        std::io::Error::other(format!("{} resolves to nothing", self.addr))
                    })?;
                let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
                stream.set_nodelay(true)?;
                self.conn.insert(stream)
            }
        };
        match conn.write_all(&self.pending).and_then(|()| conn.flush()) {
            Ok(()) => {
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Records the chain's position (after the records up to it were sent).
    pub(super) fn checkpoint(&self, seq: u64, hash: &str) -> std::io::Result<()> {
        let mut tmp = self.checkpoint.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{seq} {hash}")?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.checkpoint)
    }
}

fn parse_checkpoint(text: &str) -> Option<(u64, String)> {
    let (seq, hash) = text.trim().split_once(' ')?;
    let hash = hash.trim();
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Some((seq.parse().ok()?, hash.to_owned())))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_octet_counted_rfc5424_messages() {
        let dir = std::env::temp_dir().join(format!("mcp-gw-syslog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (mut sink, tail) = Syslog::open(&addr, &dir.join("cp")).expect("open");
        assert!(tail.is_none());
        sink.push(b"{\"seq\":1,\"x\":\"\xc3\xa9\"}\n")
            .expect("push");
        sink.push(b"{\"seq\":2}\n").expect("push");
        sink.send().expect("send");
        let (mut conn, _) = listener.accept().expect("accept");
        drop(sink);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut conn, &mut got).expect("read");
        let mut rest = &got[..];
        let mut messages = Vec::new();
        while !rest.is_empty() {
            let space = rest.iter().position(|b| *b == b' ').expect("length");
            let len: usize = std::str::from_utf8(&rest[..space])
                .unwrap()
                .parse()
                .unwrap();
            let frame = &rest[space + 1..space + 1 + len];
            messages.push(String::from_utf8(frame.to_vec()).unwrap());
            rest = &rest[space + 1 + len..];
        }
        assert_eq!(messages.len(), 2);
        let fields: Vec<&str> = messages[0].splitn(8, ' ').collect();
        assert_eq!(fields[0], "<110>1");
        assert_eq!(fields[3], "mcp-gateway");
        assert_eq!(fields[5], "audit");
        assert_eq!(fields[6], "-");
        assert_eq!(fields[7], "{\"seq\":1,\"x\":\"é\"}");
        let (sink, _) = Syslog::open(&addr, &dir.join("cp")).expect("open");
        sink.checkpoint(2, &"a".repeat(64)).expect("checkpoint");
        let (_, tail) = Syslog::open(&addr, &dir.join("cp")).expect("reopen");
        assert_eq!(tail, Some((2, "a".repeat(64))));
        std::fs::write(dir.join("cp"), "garbage").expect("write");
        assert!(Syslog::open(&addr, &dir.join("cp")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
