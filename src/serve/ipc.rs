//! Arrow IPC from a client (a prepared statement's parameters), decoded with every declared length
//! checked against the bytes present, and against small limits, before anything is allocated.
//!
//! arrow-ipc trusts what a message declares: a stream whose metadata length says 2 GB, or whose
//! body length says 64 GiB, makes its reader allocate that much (and abort the process when it
//! cannot); a buffer that points past the body panics; a compressed buffer's declared size is
//! allocated as it stands. Here each message is checked first, compressed and dictionary batches
//! are refused (parameters are one small row), and the decoding itself runs under
//! `catch_unwind`, so a message no check foresaw is an error for its client, not a crash.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::{MessageHeader, root_as_message};

/// The most bytes (metadata and bodies together) one set of parameters may take.
pub const MAX_BYTES: usize = 1 << 20;

/// The most rows one batch may declare (an execution binds one row).
pub const MAX_ROWS: i64 = 1024;

/// Why a client's Arrow IPC is refused: what it declares does not fit the bytes sent or the
/// limits, it is not what parameters are, or decoding it failed.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// Over [`MAX_BYTES`] in all.
    #[error("the parameter data is larger than {} KiB", MAX_BYTES >> 10)]
    TooLarge,
    /// Metadata the flatbuffer verifier refuses: what it said (its error type is flatbuffers',
    /// which is not a dependency of this crate, and is no `std::error::Error` as arrow builds it).
    #[error("not an Arrow IPC message: {reason}")]
    NotAMessage { reason: String },
    /// A message whose body length is more than the body sent with it.
    #[error("an IPC message declares a body of {declared} bytes, but {sent} were sent")]
    BodyNotSent { declared: i64, sent: usize },
    #[error("a second schema in the parameter data")]
    SecondSchema,
    #[error("an IPC schema message without a schema")]
    NoSchema,
    #[error("a record batch before its schema")]
    BatchBeforeSchema,
    #[error("an IPC record batch message without a batch")]
    NoBatch,
    #[error("compressed parameter batches are not supported: send them uncompressed")]
    Compressed,
    #[error("an IPC record batch declares {rows} rows (at most {})", MAX_ROWS)]
    TooManyRows { rows: i64 },
    #[error("an IPC record batch declares an array of {0} values")]
    ArrayTooLong(i64),
    #[error("an IPC buffer at offset {offset} of {length} bytes lies outside the {body}-byte body")]
    BufferOutsideBody { offset: i64, length: i64, body: usize },
    #[error("dictionary-encoded parameters are not supported")]
    Dictionary,
    #[error("unexpected IPC message {0:?} in the parameter data")]
    Unexpected(MessageHeader),
    /// A stream that ends inside a length prefix.
    #[error("the IPC stream is truncated (in a length prefix)")]
    Truncated,
    /// A stream whose metadata length is more than the bytes left in it.
    #[error("an IPC message declares {declared} bytes of metadata, but only {left} follow")]
    MetadataBeyondStream { declared: usize, left: usize },
    /// A stream whose body length is more than the bytes left in it.
    #[error("an IPC message declares a body of {declared} bytes, but only {left} follow")]
    BodyBeyondStream { declared: i64, left: usize },
    /// What arrow-ipc said when the checked message did not decode.
    #[error("{0}")]
    Arrow(arrow::error::ArrowError),
    /// A panic in the decoder, caught: what it said.
    #[error("undecodable IPC data ({0})")]
    Panicked(String),
}

/// Reads the messages of one client's parameter data: a schema, then record batches.
#[derive(Debug, Default)]
pub struct Decoder {
    schema: Option<SchemaRef>,
    batches: Vec<RecordBatch>,
    bytes: usize,
}

impl Decoder {
    /// One IPC message: its flatbuffer metadata (`header`, without the stream's length prefix) and
    /// its body.
    pub fn push(&mut self, header: &[u8], body: &[u8]) -> Result<(), IpcError> {
        self.bytes = self.bytes.saturating_add(header.len()).saturating_add(body.len());
        if self.bytes > MAX_BYTES {
            return Err(IpcError::TooLarge);
        }
        let message = root_as_message(header).map_err(|e| IpcError::NotAMessage { reason: e.to_string() })?;
        let declared = message.bodyLength();
        if declared < 0 || declared as u64 > body.len() as u64 {
            return Err(IpcError::BodyNotSent { declared, sent: body.len() });
        }
        let body = &body[..declared as usize];
        match message.header_type() {
            MessageHeader::Schema => {
                if self.schema.is_some() {
                    return Err(IpcError::SecondSchema);
                }
                let fb = message.header_as_schema().ok_or(IpcError::NoSchema)?;
                let schema = caught(|| Ok(arrow::ipc::convert::fb_to_schema(fb)))?;
                self.schema = Some(Arc::new(schema));
                Ok(())
            }
            MessageHeader::RecordBatch => {
                let schema = self.schema.clone().ok_or(IpcError::BatchBeforeSchema)?;
                let batch = message.header_as_record_batch().ok_or(IpcError::NoBatch)?;
                if batch.compression().is_some() {
                    return Err(IpcError::Compressed);
                }
                if !(0..=MAX_ROWS).contains(&batch.length()) {
                    return Err(IpcError::TooManyRows { rows: batch.length() });
                }
                for node in batch.nodes().into_iter().flatten() {
                    // Nested values may outnumber rows, but never the bits of the body.
                    if node.length() < 0 || node.length() as u64 > 8 * MAX_BYTES as u64 || node.null_count() < 0 {
                        return Err(IpcError::ArrayTooLong(node.length()));
                    }
                }
                for b in batch.buffers().into_iter().flatten() {
                    let end = b.offset().checked_add(b.length());
                    if b.offset() < 0 || b.length() < 0 || end.is_none_or(|end| end as u64 > body.len() as u64) {
                        return Err(IpcError::BufferOutsideBody { offset: b.offset(), length: b.length(), body: body.len() });
                    }
                }
                let version = message.version();
                let decoded = caught(|| {
                    arrow::ipc::reader::read_record_batch(&Buffer::from(body), batch, schema, &HashMap::new(), None, &version)
                        .map_err(IpcError::Arrow)
                })?;
                self.batches.push(decoded);
                Ok(())
            }
            MessageHeader::DictionaryBatch => Err(IpcError::Dictionary),
            other => Err(IpcError::Unexpected(other)),
        }
    }

    /// The rows decoded so far.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    pub fn finish(self) -> Vec<RecordBatch> {
        self.batches
    }
}

/// Decodes an Arrow IPC stream (`[0xFFFFFFFF] <metadata length> <metadata> <body>`…, ended by a
/// zero length or the end of the bytes), checking each declared length against the bytes left.
pub fn decode_stream(bytes: &[u8]) -> Result<Vec<RecordBatch>, IpcError> {
    let mut decoder = Decoder::default();
    let mut rest = bytes;
    let take_u32 = |rest: &mut &[u8]| -> Result<u32, IpcError> {
        let (word, after) = rest.split_first_chunk::<4>().ok_or(IpcError::Truncated)?;
        *rest = after;
        Ok(u32::from_le_bytes(*word))
    };
    while !rest.is_empty() {
        let mut len = take_u32(&mut rest)?;
        if len == 0xFFFF_FFFF {
            len = take_u32(&mut rest)?;
        }
        if len == 0 {
            break;
        }
        let len = len as usize;
        if len > rest.len() {
            return Err(IpcError::MetadataBeyondStream { declared: len, left: rest.len() });
        }
        let (header, after) = rest.split_at(len);
        let declared = root_as_message(header).map_err(|e| IpcError::NotAMessage { reason: e.to_string() })?.bodyLength();
        if declared < 0 || declared as u64 > after.len() as u64 {
            return Err(IpcError::BodyBeyondStream { declared, left: after.len() });
        }
        let (body, after) = after.split_at(declared as usize);
        decoder.push(header, body)?;
        rest = after;
    }
    Ok(decoder.finish())
}

/// `f`, with a panic turned into an error.
fn caught<T>(f: impl FnOnce() -> Result<T, IpcError>) -> Result<T, IpcError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| Err(IpcError::Panicked(panic_text(&*p))))
}

/// What a caught panic said.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::ipc::writer::StreamWriter;

    fn stream() -> Vec<u8> {
        let batch = RecordBatch::try_from_iter([
            ("0", Arc::new(Int64Array::from(vec![7])) as _),
            ("1", Arc::new(StringArray::from(vec!["msiexec.exe"])) as _),
        ])
        .unwrap();
        let mut buf = Vec::new();
        let mut w = StreamWriter::try_new(&mut buf, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        buf
    }

    /// The offsets of the messages of a stream: (metadata length word, metadata, body).
    fn messages(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            if len == 0 {
                return out;
            }
            let body = root_as_message(&bytes[at + 8..at + 8 + len]).unwrap().bodyLength() as usize;
            out.push((at + 4, at + 8, at + 8 + len));
            at += 8 + len + body;
        }
    }

    #[test]
    fn a_well_formed_stream_decodes() {
        let batches = decode_stream(&stream()).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].num_rows(), 1);
    }

    #[test]
    fn declared_lengths_beyond_the_bytes_are_refused_before_allocating() {
        let good = stream();
        let msgs = messages(&good);
        // Metadata length 0x7ffffff0 (2 GiB) in a stream of a few hundred bytes.
        let mut huge_meta = good.clone();
        huge_meta[msgs[0].0..msgs[0].0 + 4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        let err = decode_stream(&huge_meta).unwrap_err();
        assert!(matches!(err, IpcError::MetadataBeyondStream { declared: 2147483632, .. }), "{err:?}");
        assert!(err.to_string().contains("declares 2147483632 bytes of metadata"), "{err}");
        // A body length of 64 GiB: rewrite the record batch message's bodyLength.
        let (_, meta, _) = msgs[1];
        let declared = root_as_message(&good[meta..msgs[1].2]).unwrap().bodyLength();
        let le = declared.to_le_bytes();
        let at = good[meta..msgs[1].2].windows(8).position(|w| w == le).unwrap() + meta;
        let mut huge_body = good.clone();
        huge_body[at..at + 8].copy_from_slice(&(64i64 << 30).to_le_bytes());
        let err = decode_stream(&huge_body).unwrap_err().to_string();
        assert!(err.contains("declares a body of 68719476736 bytes"), "{err}");
        // Cut anywhere: an error, never a panic.
        for cut in 0..good.len() {
            let _ = decode_stream(&good[..cut]);
        }
        assert!(decode_stream(&good[..good.len() - 20]).is_err());
        // Every byte flipped: an error or a batch, never a panic or an allocation to fear.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = decode_stream(&bad);
        }
    }

    #[test]
    fn buffers_outside_the_body_and_compression_are_refused() {
        let good = stream();
        let msgs = messages(&good);
        let (schema_meta, schema_end) = (msgs[0].1, msgs[0].2);
        let (_, meta, end) = msgs[1];
        let header = &good[meta..end];
        let body = &good[end..end + root_as_message(header).unwrap().bodyLength() as usize];
        // The last buffer moved past the end of the body (the body length left as it is).
        let buffers = root_as_message(header).unwrap().header_as_record_batch().unwrap().buffers().unwrap();
        let last = buffers.bytes().as_ptr() as usize - header.as_ptr() as usize + 16 * (buffers.len() - 1);
        let mut moved = header.to_vec();
        moved[last..last + 8].copy_from_slice(&(body.len() as i64 + 100).to_le_bytes());
        let mut d = Decoder::default();
        d.push(&good[schema_meta..schema_end], &[]).unwrap();
        let err = d.push(&moved, body).unwrap_err().to_string();
        assert!(err.contains("lies outside the"), "{err}");
        // The same batch, compressed: refused (a compressed buffer's declared size is allocated as
        // it stands).
        let batch = decode_stream(&good).unwrap().remove(0);
        let opts = arrow::ipc::writer::IpcWriteOptions::default().try_with_compression(Some(arrow::ipc::CompressionType::ZSTD)).unwrap();
        let mut zipped = Vec::new();
        let mut w = StreamWriter::try_new_with_options(&mut zipped, &batch.schema(), opts).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        assert!(decode_stream(&zipped).unwrap_err().to_string().contains("compressed parameter batches are not supported"));
        // A record batch before any schema, and a second schema.
        let mut d = Decoder::default();
        assert!(d.push(header, body).unwrap_err().to_string().contains("before its schema"));
        d.push(&good[schema_meta..schema_end], &[]).unwrap();
        assert!(d.push(&good[schema_meta..schema_end], &[]).unwrap_err().to_string().contains("second schema"));
        // Over the size limit in all: its own error, which the service answers as too many values.
        let mut d = Decoder::default();
        let err = d.push(&vec![0; MAX_BYTES + 1], &[]).unwrap_err();
        assert!(matches!(err, IpcError::TooLarge), "{err:?}");
        assert_eq!(err.to_string(), "the parameter data is larger than 1024 KiB");
    }
}
