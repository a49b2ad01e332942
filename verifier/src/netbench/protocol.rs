//! The bench's wire protocol: one hello per connection from the runner, one
//! status byte back from the server, then bulk data one way (runner to
//! server, as a migration's pages go), and at the runner's end of data the
//! server's count of what it received.
//!
//! The hello is fixed-size up to the token so a server can tell a stray
//! client (a port scanner, an HTTP probe) from a runner after a few bytes,
//! without reading anything the client chooses the size of beyond 64 bytes.

use std::io::{self, Read, Write};

/// "MVNB": migverify network bench.
pub const MAGIC: [u8; 4] = *b"MVNB";
pub const VERSION: u8 = 1;
/// Longest shared token a hello carries.
pub const MAX_TOKEN: usize = 64;
/// magic, version, kind, index, streams, run id, token length.
const FIXED_LEN: usize = 4 + 1 + 1 + 2 + 2 + 16 + 1;

/// Which of a run's connections this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The main stream, as QEMU's main migration channel: it opens the run.
    Main,
    /// Parallel channel `n` (0-based), as a multifd channel.
    Channel(u16),
}

/// The first thing a runner sends on every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub role: Role,
    /// Parallel channels in the run (besides the main stream).
    pub streams: u16,
    /// Ties the channels to their main stream.
    pub run_id: [u8; 16],
    pub token: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("not a migverify bench client (first bytes {0:02x?})")]
    Magic([u8; 4]),
    #[error("protocol version {0}; this end speaks {VERSION}")]
    Version(u8),
    #[error("unknown stream kind {0}")]
    Kind(u8),
    #[error("channel {index} of a run with {streams} channels")]
    Index { index: u16, streams: u16 },
    #[error("token of {0} bytes (at most {MAX_TOKEN})")]
    TokenLength(usize),
    #[error("hello cut short after {0} bytes")]
    Truncated(usize),
    #[error("{0} bytes after the hello's token")]
    Trailing(usize),
}

impl Hello {
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        if self.token.len() > MAX_TOKEN {
            return Err(ProtocolError::TokenLength(self.token.len()));
        }
        let (kind, index) = match self.role {
            Role::Main => (0u8, 0u16),
            Role::Channel(n) => (1, n),
        };
        let mut out = Vec::with_capacity(FIXED_LEN + self.token.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(kind);
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&self.streams.to_be_bytes());
        out.extend_from_slice(&self.run_id);
        out.push(self.token.len() as u8);
        out.extend_from_slice(&self.token);
        Ok(out)
    }

    /// Parses exactly one hello; anything malformed is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Hello, ProtocolError> {
        let token_len = Self::check_fixed(bytes)?;
        let end = FIXED_LEN + token_len;
        if bytes.len() < end {
            return Err(ProtocolError::Truncated(bytes.len()));
        }
        if bytes.len() > end {
            return Err(ProtocolError::Trailing(bytes.len() - end));
        }
        let u16_at = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let streams = u16_at(8);
        let role = match bytes[5] {
            0 => Role::Main,
            _ => Role::Channel(u16_at(6)),
        };
        let mut run_id = [0; 16];
        run_id.copy_from_slice(&bytes[10..26]);
        Ok(Hello {
            role,
            streams,
            run_id,
            token: bytes[FIXED_LEN..end].to_vec(),
        })
    }

    /// Validates the fixed part (as far as it goes); the token's length.
    fn check_fixed(bytes: &[u8]) -> Result<usize, ProtocolError> {
        let mut magic = [0u8; 4];
        let n = bytes.len().min(4);
        magic[..n].copy_from_slice(&bytes[..n]);
        if magic[..n] != MAGIC[..n] {
            return Err(ProtocolError::Magic(magic));
        }
        if bytes.len() < FIXED_LEN {
            return Err(ProtocolError::Truncated(bytes.len()));
        }
        if bytes[4] != VERSION {
            return Err(ProtocolError::Version(bytes[4]));
        }
        let streams = u16::from_be_bytes([bytes[8], bytes[9]]);
        match bytes[5] {
            0 => {}
            1 => {
                let index = u16::from_be_bytes([bytes[6], bytes[7]]);
                if index >= streams {
                    return Err(ProtocolError::Index { index, streams });
                }
            }
            other => return Err(ProtocolError::Kind(other)),
        }
        let token_len = usize::from(bytes[FIXED_LEN - 1]);
        if token_len > MAX_TOKEN {
            return Err(ProtocolError::TokenLength(token_len));
        }
        Ok(token_len)
    }
}

/// What reading a hello off a connection can end in.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads one hello, checking the fixed part before reading the token.
pub fn read_hello(reader: &mut impl Read) -> Result<Hello, ReadError> {
    let mut fixed = [0u8; FIXED_LEN];
    read_full(reader, &mut fixed)?;
    let token_len = Hello::check_fixed(&fixed)?;
    let mut all = fixed.to_vec();
    all.resize(FIXED_LEN + token_len, 0);
    read_full(reader, &mut all[FIXED_LEN..])?;
    Ok(Hello::decode(&all)?)
}

/// Fills `buf`; a peer that stops early is a truncated hello (checked for
/// its magic first, so garbage is named as such).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), ReadError> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => {
                Hello::check_fixed(&buf[..got])?;
                return Err(ProtocolError::Truncated(got).into());
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The server's answer to a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Accepted = 0,
    /// Wrong or missing token.
    Unauthorized = 1,
    /// A channel whose run has no open main stream, or a channel twice.
    UnknownRun = 2,
    /// Too many connections at once.
    Busy = 3,
}

impl Status {
    pub fn from_u8(byte: u8) -> Option<Status> {
        [
            Status::Accepted,
            Status::Unauthorized,
            Status::UnknownRun,
            Status::Busy,
        ]
        .into_iter()
        .find(|s| *s as u8 == byte)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Unauthorized => "refused: wrong or missing token",
            Status::UnknownRun => "refused: no such run open on the server",
            Status::Busy => "refused: the server is at its connection limit",
        }
    }
}

pub fn write_status(writer: &mut impl Write, status: Status) -> io::Result<()> {
    writer.write_all(&[status as u8])?;
    writer.flush()
}

/// The byte count that closes a stream, big-endian.
pub fn write_count(writer: &mut impl Write, count: u64) -> io::Result<()> {
    writer.write_all(&count.to_be_bytes())?;
    writer.flush()
}

pub fn read_count(reader: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    reader.read_exact(&mut bytes)?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(role: Role) -> Hello {
        Hello {
            role,
            streams: 8,
            run_id: [7; 16],
            token: b"secret".to_vec(),
        }
    }

    #[test]
    fn a_hello_round_trips() {
        for role in [Role::Main, Role::Channel(0), Role::Channel(7)] {
            let bytes = hello(role).encode().unwrap();
            assert_eq!(Hello::decode(&bytes).unwrap(), hello(role));
            assert_eq!(read_hello(&mut &bytes[..]).unwrap(), hello(role));
        }
    }

    #[test]
    fn malformed_hellos_are_named_errors() {
        let good = hello(Role::Channel(3)).encode().unwrap();
        assert_eq!(
            Hello::decode(b"GET / HTTP/1.1\r\n"),
            Err(ProtocolError::Magic(*b"GET "))
        );
        assert_eq!(Hello::decode(b""), Err(ProtocolError::Truncated(0)));
        assert_eq!(Hello::decode(b"MV"), Err(ProtocolError::Truncated(2)));
        assert_eq!(
            Hello::decode(&good[..good.len() - 1]),
            Err(ProtocolError::Truncated(good.len() - 1))
        );
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(Hello::decode(&extra), Err(ProtocolError::Trailing(1)));
        let mut version = good.clone();
        version[4] = 9;
        assert_eq!(Hello::decode(&version), Err(ProtocolError::Version(9)));
        let mut kind = good.clone();
        kind[5] = 4;
        assert_eq!(Hello::decode(&kind), Err(ProtocolError::Kind(4)));
        let mut index = good.clone();
        index[7] = 8;
        assert_eq!(
            Hello::decode(&index),
            Err(ProtocolError::Index {
                index: 8,
                streams: 8
            })
        );
        let mut long = good.clone();
        long[26] = 200;
        assert_eq!(Hello::decode(&long), Err(ProtocolError::TokenLength(200)));
        let too_long = Hello {
            token: vec![1; 65],
            ..hello(Role::Main)
        };
        assert_eq!(too_long.encode(), Err(ProtocolError::TokenLength(65)));
    }

    #[test]
    fn garbage_is_caught_before_the_full_header() {
        // A client that sends 3 wrong bytes and closes: named garbage, not "truncated".
        assert!(matches!(
            read_hello(&mut &b"abc"[..]),
            Err(ReadError::Protocol(ProtocolError::Magic(_)))
        ));
        assert!(matches!(
            read_hello(&mut &b"MVN"[..]),
            Err(ReadError::Protocol(ProtocolError::Truncated(3)))
        ));
    }

    #[test]
    fn statuses_round_trip() {
        for byte in 0..4 {
            assert_eq!(Status::from_u8(byte).map(|s| s as u8), Some(byte));
        }
        assert_eq!(Status::from_u8(4), None);
    }
}
