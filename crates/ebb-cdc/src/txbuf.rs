//! Transactions that PostgreSQL streams before they commit (pgoutput v2 `streaming`): their
//! messages are held until Stream Commit, in memory up to a budget and in spill files beyond
//! it. Aborted subtransactions are dropped at replay; an aborted transaction is forgotten.
//!
//! A transaction's messages are kept as length-prefixed frames (`u32` big-endian length,
//! then the message) in one growing buffer, the same frames its spill file holds: the budget
//! counts the bytes really held (a million small messages are not a million allocations), and
//! spilling is one write of the buffer.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use bytes::Bytes;
use ebb_postgres::pgoutput::{Decoder, LogicalMessage};

use crate::error::CdcError;

/// One in-progress transaction.
#[derive(Debug, Default)]
struct Buffered {
    /// Frames not yet spilled.
    memory: Vec<u8>,
    memory_bytes: usize,
    spill: Option<(PathBuf, BufWriter<File>)>,
    spilled: u64,
    aborted: HashSet<u32>,
}

/// The in-progress transactions of one stream.
#[derive(Debug)]
pub struct StreamedTransactions {
    budget: usize,
    used: usize,
    dir: PathBuf,
    txs: HashMap<u32, Buffered>,
    /// Bytes written to spill files so far (a metric).
    pub spilled_bytes: u64,
}

/// The subtransaction a data message belongs to (the xid that streamed messages carry).
fn message_xid(message: &LogicalMessage) -> Option<u32> {
    match message {
        LogicalMessage::Insert(m) => m.xid,
        LogicalMessage::Update(m) => m.xid,
        LogicalMessage::Delete(m) => m.xid,
        LogicalMessage::Truncate(m) => m.xid,
        LogicalMessage::Relation(m) => m.xid,
        LogicalMessage::Type(m) => m.xid,
        LogicalMessage::Message(m) => m.xid,
        _ => None,
    }
}

impl StreamedTransactions {
    /// Holds up to `budget` bytes in memory, spilling to files in `dir` beyond it.
    pub fn new(budget: usize, dir: PathBuf) -> StreamedTransactions {
        StreamedTransactions {
            budget,
            used: 0,
            dir,
            txs: HashMap::new(),
            spilled_bytes: 0,
        }
    }

    /// Bytes held in memory.
    pub fn memory_bytes(&self) -> usize {
        self.used
    }

    /// Whether any transaction is in progress.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Adds one message (its raw pgoutput bytes) of transaction `xid`'s streamed block.
    pub fn push(&mut self, xid: u32, data: &[u8]) -> Result<(), CdcError> {
        let len = u32::try_from(data.len())
            .map_err(|_| CdcError::Data("a pgoutput message over 4 GiB".into()))?;
        let frame = 4 + data.len();
        loop {
            let tx = self.txs.entry(xid).or_default();
            let (held, cap) = (tx.memory.len(), tx.memory.capacity());
            if held + frame <= cap {
                break;
            }
            // The buffer would grow (doubling): spill before it outgrows the budget.
            let growth = (cap * 2).max(held + frame).max(8) - cap;
            if self.used + growth <= self.budget || self.used == 0 {
                break;
            }
            self.spill_largest()?;
        }
        let tx = self.txs.get_mut(&xid).expect("inserted above");
        let before = tx.memory.capacity();
        tx.memory.reserve(frame);
        tx.memory.extend_from_slice(&len.to_be_bytes());
        tx.memory.extend_from_slice(data);
        // What is held is the buffer's capacity.
        let grown = tx.memory.capacity() - before;
        tx.memory_bytes += grown;
        self.used += grown;
        Ok(())
    }

    fn spill_largest(&mut self) -> Result<(), CdcError> {
        let Some((&xid, _)) = self.txs.iter().max_by_key(|(_, t)| t.memory_bytes) else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(CdcError::io(format!("creating {}", self.dir.display())))?;
        let dir = self.dir.clone();
        let tx = self.txs.get_mut(&xid).expect("picked from the map");
        if tx.spill.is_none() {
            let path = dir.join(format!("tx-{}-{xid}.spill", std::process::id()));
            let file = File::create(&path)
                .map_err(CdcError::io(format!("creating {}", path.display())))?;
            tx.spill = Some((path, BufWriter::with_capacity(1 << 20, file)));
        }
        let (path, writer) = tx.spill.as_mut().expect("just set");
        writer
            .write_all(&tx.memory)
            .map_err(CdcError::io(format!("writing {}", path.display())))?;
        tx.spilled += tx.memory.len() as u64;
        tracing::debug!(
            xid,
            bytes = tx.memory.len(),
            "streamed transaction spilled to disk"
        );
        self.spilled_bytes += tx.memory.len() as u64;
        self.used -= tx.memory_bytes;
        // Give the memory back: the next frames start a small buffer again.
        tx.memory = Vec::new();
        tx.memory_bytes = 0;
        Ok(())
    }

    /// `subxid` of `xid` aborted (the whole transaction when they are equal).
    pub fn abort(&mut self, xid: u32, subxid: u32) {
        if xid == subxid {
            if let Some(tx) = self.txs.remove(&xid) {
                self.used -= tx.memory_bytes;
                if let Some((path, writer)) = tx.spill {
                    drop(writer);
                    let _ = std::fs::remove_file(path);
                }
            }
        } else if let Some(tx) = self.txs.get_mut(&xid) {
            tx.aborted.insert(subxid);
        }
    }

    /// Takes transaction `xid` for replay after its commit: its messages in order, aborted
    /// subtransactions left out.
    pub fn take(&mut self, xid: u32) -> Result<Replay, CdcError> {
        let tx = self.txs.remove(&xid).unwrap_or_default();
        self.used -= tx.memory_bytes;
        let spill = match tx.spill {
            Some((path, mut writer)) => {
                writer
                    .flush()
                    .map_err(CdcError::io(format!("writing {}", path.display())))?;
                drop(writer);
                let file = File::open(&path)
                    .map_err(CdcError::io(format!("opening {}", path.display())))?;
                Some((path, BufReader::with_capacity(1 << 20, file)))
            }
            None => None,
        };
        let mut decoder = Decoder::new(2);
        // Data messages of a streamed block carry their xid: decode them in stream mode.
        let mut start = vec![b'S'];
        start.extend_from_slice(&xid.to_be_bytes());
        start.push(1);
        decoder
            .decode(&Bytes::from(start))
            .map_err(|e| CdcError::Data(format!("replaying transaction {xid}: {e}")))?;
        Ok(Replay {
            xid,
            decoder,
            spill,
            memory: Bytes::from(tx.memory),
            aborted: tx.aborted,
        })
    }

    /// Removes every spill file (on shutdown).
    pub fn clear(&mut self) {
        for (_, tx) in self.txs.drain() {
            if let Some((path, writer)) = tx.spill {
                drop(writer);
                let _ = std::fs::remove_file(path);
            }
        }
        self.used = 0;
    }
}

impl Drop for StreamedTransactions {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The messages of a committed streamed transaction, read back in order.
#[derive(Debug)]
pub struct Replay {
    xid: u32,
    decoder: Decoder,
    spill: Option<(PathBuf, BufReader<File>)>,
    /// Frames held in memory (after the spilled ones).
    memory: Bytes,
    aborted: HashSet<u32>,
}

impl Replay {
    fn next_raw(&mut self) -> Result<Option<Bytes>, CdcError> {
        if let Some((path, reader)) = &mut self.spill {
            let mut len = [0u8; 4];
            match reader.read_exact(&mut len) {
                Ok(()) => {
                    let mut buf = vec![0; u32::from_be_bytes(len) as usize];
                    reader
                        .read_exact(&mut buf)
                        .map_err(CdcError::io(format!("reading {}", path.display())))?;
                    return Ok(Some(Bytes::from(buf)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    let _ = std::fs::remove_file(&*path);
                    self.spill = None;
                }
                Err(e) => return Err(CdcError::io(format!("reading {}", path.display()))(e)),
            }
        }
        if self.memory.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([
            self.memory[0],
            self.memory[1],
            self.memory[2],
            self.memory[3],
        ]) as usize;
        let _ = self.memory.split_to(4);
        if self.memory.len() < len {
            return Err(CdcError::Data(format!(
                "replaying transaction {}: a buffered message is cut short",
                self.xid
            )));
        }
        Ok(Some(self.memory.split_to(len)))
    }

    /// The next message that belongs to a committed (sub)transaction.
    pub fn next_message(&mut self) -> Result<Option<LogicalMessage>, CdcError> {
        while let Some(raw) = self.next_raw()? {
            let message = self
                .decoder
                .decode(&raw)
                .map_err(|e| CdcError::Data(format!("replaying transaction {}: {e}", self.xid)))?;
            if message_xid(&message).is_some_and(|x| self.aborted.contains(&x)) {
                continue;
            }
            return Ok(Some(message));
        }
        Ok(None)
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some((path, _)) = self.spill.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
