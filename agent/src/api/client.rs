//! The `cordon` CLI's side of the socket.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::Request;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to cordond at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lost the connection to cordond: {0}")]
    Io(#[from] std::io::Error),
    /// cordond answered with an error.
    #[error("{0}")]
    Refused(String),
    #[error("cordond sent a reply that is not JSON: {0}")]
    BadReply(String),
}

/// The socket: `explicit`, else `$CORDON_SOCKET`, else the default.
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CORDON_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(super::DEFAULT_SOCKET))
}

pub struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Self { stream, reader })
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Sends `request` and returns the first reply, or the daemon's error.
    pub fn call(&mut self, request: &Request) -> Result<serde_json::Value, ClientError> {
        self.send(request, &[])?;
        self.reply()
    }

    /// Sends `request` with descriptors attached (`SCM_RIGHTS`).
    pub fn send(&mut self, request: &Request, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if fds.is_empty() {
            self.stream.write_all(&line)?;
            return Ok(());
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
        let iov = [std::io::IoSlice::new(&line)];
        let sent = nix::sys::socket::sendmsg::<()>(
            self.stream.as_raw_fd(),
            &iov,
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map_err(std::io::Error::from)?;
        // The descriptors went with the first byte; the rest of the line follows plainly.
        self.stream.write_all(&line[sent..])?;
        Ok(())
    }

    /// Reads a reply line and checks `ok`.
    pub fn reply(&mut self) -> Result<serde_json::Value, ClientError> {
        let line = self
            .next_line()?
            .ok_or_else(|| ClientError::Refused("cordond closed the connection".into()))?;
        let value: serde_json::Value = serde_json::from_slice(&line)
            .map_err(|_| ClientError::BadReply(String::from_utf8_lossy(&line).into_owned()))?;
        if value["ok"] == serde_json::Value::Bool(true) {
            Ok(value)
        } else {
            Err(ClientError::Refused(
                value["error"]
                    .as_str()
                    .unwrap_or("cordond refused the request")
                    .to_string(),
            ))
        }
    }

    /// The next line (without its newline); `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok(Some(line))
    }
}
