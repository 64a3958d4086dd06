//! The little HTTP/1.1 that `--listen` (/metrics) and `--live` (the dashboard) serve: a GET's
//! path and headers read with a size and time limit, a whole answer written with its length. One
//! request per connection; anything bigger belongs to a real web server in front.
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The head of a request (its line and headers) may not be longer.
const MAX_HEAD: usize = 16 * 1024;

/// A request's method, path (without the query) and headers.
pub struct Request {
    pub method: String,
    pub path: String,
    head: String,
}

impl Request {
    /// The first header of this name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Reads one request's head, waiting at most 5 s for it. `None` when the peer sent no complete,
/// well-formed head (it is answered 400 by the caller, or simply dropped).
pub fn read_request(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Ok(None);
    };
    let path = target.split('?').next().unwrap_or_default().to_string();
    Ok(Some(Request {
        method: method.to_string(),
        path,
        head,
    }))
}

/// Writes a whole answer and closes: `status` as "404 Not Found".
pub fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) -> io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_a_path_and_headers_and_refuses_a_head_without_end() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /events?x=1 HTTP/1.1\r\nHost: a\r\nlast-event-id:  7 \r\n\r\n")
                .unwrap();
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        });
        let (mut stream, _) = listener.accept().unwrap();
        let request = read_request(&mut stream).unwrap().unwrap();
        assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/events"));
        assert_eq!(request.header("Last-Event-ID"), Some("7"));
        assert_eq!(request.header("Accept"), None);
        client.join().unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        assert!(read_request(&mut stream).unwrap().is_none());
    }
}
