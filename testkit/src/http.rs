//! An HTTP/1.1 server on a loopback port that stands in for a collector or an output's
//! receiver: keep-alive connections, bodies by `Content-Length`, each request handed to the
//! caller's answer. Stopped, the port refuses connections and the open ones are closed, like
//! a receiver that is gone; restarted, it listens on the same port again.
//!
//! It is what the end-to-end tests and the benchmarks need of a server, and no more: no
//! chunked bodies, no TLS, a thread per connection.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target, query included.
    pub path: String,
    /// Names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, gunzipped when it says it is gzip; `None` when that fails.
    pub fn decoded_body(&self) -> Option<Vec<u8>> {
        if self.header("content-encoding") != Some("gzip") {
            return Some(self.body.clone());
        }
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&self.body[..])
            .read_to_end(&mut plain)
            .ok()?;
        Some(plain)
    }
}

/// What the server answers a request with: a status and a JSON body.
pub type Answer = Arc<dyn Fn(&Request) -> (u16, String) + Send + Sync>;

/// How long an idle connection waits before it looks whether the server was stopped.
const IDLE_CHECK: Duration = Duration::from_millis(50);
/// How long a request that has begun may take to arrive whole.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The server; stopped when dropped.
pub struct HttpStandIn {
    addr: SocketAddr,
    answer: Answer,
    /// Set to stop the accept loop and every connection.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpStandIn {
    /// Listens on a free port of 127.0.0.1, answering each request with `answer`.
    pub fn start(answer: Answer) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut server = Self {
            addr: listener.local_addr()?,
            answer,
            stop: Arc::default(),
            thread: None,
        };
        server.serve(listener)?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops listening and closes every connection: connections are refused from now on.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same port (waiting up to 10 s for the kernel to let it go).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let until = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= until => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        self.serve(listener)
    }

    fn serve(&mut self, listener: TcpListener) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = Arc::clone(&stop);
        let answer = Arc::clone(&self.answer);
        self.thread = Some(std::thread::spawn(move || {
            let mut open = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (stop, answer) = (Arc::clone(&stop), Arc::clone(&answer));
                        open.push(std::thread::spawn(move || {
                            let _ = connection(stream, &stop, &*answer);
                        }));
                        open.retain(|t: &JoinHandle<()>| !t.is_finished());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for t in open {
                let _ = t.join();
            }
        }));
        Ok(())
    }
}

impl Drop for HttpStandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Requests on one keep-alive connection until the peer closes it or the server stops.
fn connection(
    stream: TcpStream,
    stop: &AtomicBool,
    answer: &dyn Fn(&Request) -> (u16, String),
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    // A peer that stops reading cannot hold the server's stop for ever.
    stream.set_write_timeout(Some(REQUEST_DEADLINE))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        // The request line, looking at the stop flag while the connection is idle.
        reader.get_ref().set_read_timeout(Some(IDLE_CHECK))?;
        let mut line = String::new();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            match reader.read_line(&mut line) {
                Ok(0) => return Ok(()),
                Ok(_) if line.ends_with('\n') => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        reader.get_ref().set_read_timeout(Some(REQUEST_DEADLINE))?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        // Bodies come with their length here (no chunked bodies): a request with a body and
        // no length is refused, plainly, rather than misread.
        let length = match length {
            Some(n) => n,
            None if method == "GET" || method == "HEAD" => 0,
            None => {
                writer.write_all(
                    b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(());
            }
        };
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let request = Request {
            method,
            path,
            headers,
            body,
        };
        let (status, reply) = answer(&request);
        // One write: an answer in pieces would wait on the client's delayed ACK.
        let whole = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reason(status),
            reply.len()
        );
        writer.write_all(whole.as_bytes())?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn post(url: &str, body: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(url.trim_start_matches("http://"))?;
        write!(
            stream,
            "POST /x?y=1 HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        Ok(status.trim_end().to_string())
    }

    #[test]
    fn requests_reach_the_answer_and_a_stopped_server_refuses_until_restarted() {
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let kept = Arc::clone(&seen);
        let mut server = HttpStandIn::start(Arc::new(move |r: &Request| {
            kept.lock().unwrap().push(r.clone());
            (503, "{}".into())
        }))
        .unwrap();
        assert_eq!(
            post(&server.url(), "{\"a\":1}").unwrap(),
            "HTTP/1.1 503 Service Unavailable"
        );
        {
            let seen = seen.lock().unwrap();
            assert_eq!(
                (seen[0].method.as_str(), seen[0].path.as_str()),
                ("POST", "/x?y=1")
            );
            assert_eq!(seen[0].header("X-TEST"), Some("yes"));
            assert_eq!(seen[0].decoded_body().unwrap(), b"{\"a\":1}");
        }
        server.stop();
        assert!(post(&server.url(), "{}").is_err(), "refused once stopped");
        server.restart().unwrap();
        assert!(post(&server.url(), "{}").is_ok(), "listening again");
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
