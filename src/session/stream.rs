//! The server-initiated stream of a handshake-era session (the GET stream):
//! numbered events kept in a bounded buffer so a client can resume with
//! `Last-Event-ID`, and at most one live listener.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

/// One event: its number on this replica, for a resumable session the
/// tag that lets another replica resume (`{replica}~{backend cursor}`),
/// and the message.
pub type Event = (u64, Option<Arc<str>>, Arc<str>);

/// The SSE `id` of an event: its number, with its tag when it has one.
pub fn event_id(event: &Event) -> String {
    match &event.1 {
        Some(tag) => format!("{}~{tag}", event.0),
        None => event.0.to_string(),
    }
}

pub struct GetStream {
    buffer: VecDeque<Event>,
    next_id: u64,
    capacity: usize,
    listener: Option<mpsc::Sender<Event>>,
}

impl GetStream {
    pub fn new(capacity: usize) -> GetStream {
        GetStream {
            buffer: VecDeque::new(),
            next_id: 1,
            capacity: capacity.max(1),
            listener: None,
        }
    }

    /// Queues a message; a listener that cannot keep up is disconnected (it
    /// may resume from the buffer), never buffered without bound.
    pub fn push(&mut self, json: String, tag: Option<Arc<str>>) {
        let event: Event = (self.next_id, tag, Arc::from(json));
        self.next_id += 1;
        if self.buffer.len() == self.capacity {
            self.buffer.pop_front();
        }
        self.buffer.push_back(event.clone());
        if let Some(listener) = &self.listener
            && listener.try_send(event).is_err()
        {
            tracing::info!("closing a GET stream whose client stopped reading");
            self.listener = None;
        }
    }

    /// Attaches a listener (replacing any other), replaying the events after
    /// `last_event_id`. Without one, only new events are sent.
    pub fn subscribe(&mut self, last_event_id: Option<u64>, queue: usize) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        if let Some(last) = last_event_id {
            for event in self.buffer.iter().filter(|(id, _, _)| *id > last) {
                if tx.try_send(event.clone()).is_err() {
                    break;
                }
            }
        }
        self.listener = Some(tx);
        rx
    }

    pub fn close(&mut self) {
        self.listener = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_after_last_event_id() {
        let mut s = GetStream::new(3);
        for i in 0..5 {
            s.push(format!("m{i}"), None);
        }
        let mut rx = s.subscribe(Some(3), 10);
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(id, _, _)| id)
            .collect();
        assert_eq!(got, vec![4, 5]);
    }

    #[test]
    fn event_ids_carry_their_tag() {
        let mut s = GetStream::new(3);
        s.push("a".into(), None);
        s.push("b".into(), Some(Arc::from("gw2~e30")));
        let mut rx = s.subscribe(Some(0), 10);
        let ids: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| event_id(&e))
            .collect();
        assert_eq!(ids, ["1", "2~gw2~e30"]);
    }

    #[test]
    fn slow_listener_is_cut() {
        let mut s = GetStream::new(100);
        let _rx = s.subscribe(None, 2);
        for i in 0..3 {
            s.push(format!("m{i}"), None);
        }
        assert!(s.listener.is_none());
    }
}
