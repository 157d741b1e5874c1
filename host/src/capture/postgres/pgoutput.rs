//! A decoder of the pgoutput logical replication messages (protocol version 1), as
//! documented in PostgreSQL's "Logical Replication Message Formats": the messages the
//! capture receives one per `XLogData` message of the replication stream.
//!
//! Only what the capture uses is decoded: Begin, Commit, Origin, Relation, Insert,
//! Update, Delete. Type, Truncate and logical decoding messages are recognised and
//! skipped (the publication does not publish truncates).

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A transaction starts; `final_lsn` is the LSN of its commit record.
    Begin {
        final_lsn: u64,
        /// Microseconds since 2000-01-01 UTC.
        commit_time: i64,
        /// The transaction's id, 32 bits (without the epoch).
        xid: u32,
    },
    /// The transaction ends; the next one's commit record lies at or after `end_lsn`.
    Commit { commit_lsn: u64, end_lsn: u64 },
    /// The transaction was replayed from the named replication origin.
    Origin { name: String },
    /// Describes a table before its first row in this decoding session.
    Relation(Relation),
    /// A row was inserted.
    Insert { relation: u32, new: Tuple },
    /// A row was updated; `old` is there with `REPLICA IDENTITY FULL` (or a key change).
    Update {
        relation: u32,
        old: Option<Tuple>,
        new: Tuple,
    },
    /// A row was deleted; `old` holds the replica identity columns.
    Delete { relation: u32, old: Tuple },
    /// Anything else (Type, Truncate, Message), skipped.
    Other(u8),
}

/// A table as pgoutput describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Relation {
    pub(crate) id: u32,
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// (column name, type oid), in table order.
    pub(crate) columns: Vec<(String, u32)>,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Datum {
    Null,
    /// A TOASTed value that did not change (an update's new tuple): take it from the
    /// old tuple.
    Unchanged,
    /// The value in text form.
    Text(String),
}

/// A row's values in the relation's column order.
pub(crate) type Tuple = Vec<Datum>;

/// Why a message could not be decoded.
pub(crate) type DecodeError = String;

/// Decodes one message.
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    let tag = reader.u8()?;
    let message = match tag {
        b'B' => {
            let final_lsn = reader.u64()?;
            let commit_time = reader.i64()?;
            let xid = reader.u32()?;
            Message::Begin {
                final_lsn,
                commit_time,
                xid,
            }
        }
        b'C' => {
            let _flags = reader.u8()?;
            let commit_lsn = reader.u64()?;
            let end_lsn = reader.u64()?;
            let _commit_time = reader.i64()?;
            Message::Commit {
                commit_lsn,
                end_lsn,
            }
        }
        b'O' => {
            let _lsn = reader.u64()?;
            Message::Origin {
                name: reader.cstring()?,
            }
        }
        b'R' => {
            let id = reader.u32()?;
            let namespace = reader.cstring()?;
            let name = reader.cstring()?;
            let _replica_identity = reader.u8()?;
            let count = reader.u16()?;
            let mut columns = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let _flags = reader.u8()?;
                let column = reader.cstring()?;
                let type_oid = reader.u32()?;
                let _type_modifier = reader.u32()?;
                columns.push((column, type_oid));
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                columns,
            })
        }
        b'I' => {
            let relation = reader.u32()?;
            reader.expect(b'N')?;
            Message::Insert {
                relation,
                new: reader.tuple()?,
            }
        }
        b'U' => {
            let relation = reader.u32()?;
            let mut old = None;
            let mut marker = reader.u8()?;
            if marker == b'K' || marker == b'O' {
                old = Some(reader.tuple()?);
                marker = reader.u8()?;
            }
            if marker != b'N' {
                return Err(format!("update: expected 'N', found {:?}", marker as char));
            }
            Message::Update {
                relation,
                old,
                new: reader.tuple()?,
            }
        }
        b'D' => {
            let relation = reader.u32()?;
            let marker = reader.u8()?;
            if marker != b'K' && marker != b'O' {
                return Err(format!(
                    "delete: expected 'K' or 'O', found {:?}",
                    marker as char
                ));
            }
            Message::Delete {
                relation,
                old: reader.tuple()?,
            }
        }
        b'Y' | b'T' | b'M' => Message::Other(tag),
        other => return Err(format!("unknown pgoutput message {:?}", other as char)),
    };
    Ok(message)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("message ends early at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn expect(&mut self, tag: u8) -> Result<(), DecodeError> {
        let found = self.u8()?;
        if found == tag {
            Ok(())
        } else {
            Err(format!(
                "expected {:?}, found {:?} at byte {}",
                tag as char,
                found as char,
                self.at - 1
            ))
        }
    }

    fn cstring(&mut self) -> Result<String, DecodeError> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|byte| *byte == 0)
            .ok_or("unterminated string")?;
        let text = String::from_utf8(rest[..end].to_vec())
            .map_err(|error| format!("string is not UTF-8: {error}"))?;
        self.at += end + 1;
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let count = self.u16()?;
        (0..count)
            .map(|_| match self.u8()? {
                b'n' => Ok(Datum::Null),
                b'u' => Ok(Datum::Unchanged),
                b't' => {
                    let length = self.u32()? as usize;
                    let bytes = self.take(length)?;
                    String::from_utf8(bytes.to_vec())
                        .map(Datum::Text)
                        .map_err(|error| format!("value is not UTF-8: {error}"))
                }
                b'b' => Err("binary column values are not asked for".to_owned()),
                other => Err(format!("unknown column value kind {:?}", other as char)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_begin_carries_the_transaction_id() {
        let mut begin = vec![b'B'];
        begin.extend(0x16_B374_D848u64.to_be_bytes());
        begin.extend(1_000_000i64.to_be_bytes());
        begin.extend(4_000_000_123u32.to_be_bytes());
        assert_eq!(
            decode(&begin).unwrap(),
            Message::Begin {
                final_lsn: 0x16_B374_D848,
                commit_time: 1_000_000,
                xid: 4_000_000_123,
            }
        );
    }

    #[test]
    fn decodes_a_relation_and_an_update_with_an_old_tuple() {
        let mut relation = vec![b'R'];
        relation.extend(7u32.to_be_bytes());
        relation.extend(b"public\0t\0");
        relation.push(b'f');
        relation.extend(2u16.to_be_bytes());
        for (name, oid) in [("id", 23u32), ("name", 25)] {
            relation.push(1);
            relation.extend(name.as_bytes());
            relation.push(0);
            relation.extend(oid.to_be_bytes());
            relation.extend((-1i32).to_be_bytes());
        }
        let Message::Relation(decoded) = decode(&relation).unwrap() else {
            panic!("not a relation");
        };
        assert_eq!(decoded.name, "t");
        assert_eq!(
            decoded.columns,
            vec![("id".to_owned(), 23), ("name".to_owned(), 25)]
        );

        let tuple = |values: &[Option<&str>]| {
            let mut bytes = (values.len() as u16).to_be_bytes().to_vec();
            for value in values {
                match value {
                    None => bytes.push(b'n'),
                    Some(text) => {
                        bytes.push(b't');
                        bytes.extend((text.len() as u32).to_be_bytes());
                        bytes.extend(text.as_bytes());
                    }
                }
            }
            bytes
        };
        let mut update = vec![b'U'];
        update.extend(7u32.to_be_bytes());
        update.push(b'O');
        update.extend(tuple(&[Some("1"), None]));
        update.push(b'N');
        update.extend(tuple(&[Some("1"), Some("x")]));
        assert_eq!(
            decode(&update).unwrap(),
            Message::Update {
                relation: 7,
                old: Some(vec![Datum::Text("1".into()), Datum::Null]),
                new: vec![Datum::Text("1".into()), Datum::Text("x".into())],
            }
        );
        let error = decode(&update[..update.len() - 1]).unwrap_err();
        assert!(error.contains("ends early"), "{error}");
    }
}
