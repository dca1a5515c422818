//! A loopback HTTP/1.1 server for fetch tests: answers each path with scripted raw bytes, one
//! request per connection, and counts every connection it accepts, so a test can prove that a
//! refused fetch never reached it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

/// What one request gets.
#[derive(Debug, Clone)]
pub enum Answer {
    /// These bytes, then the connection is closed.
    Full(Vec<u8>),
    /// These bytes, then nothing more until the server stops (a body that never ends).
    Stall(Vec<u8>),
}

impl Answer {
    /// `200` with `content_type`, `extra` header lines and `body` (with its length).
    pub fn ok(content_type: &str, extra: &[(&str, &str)], body: &[u8]) -> Self {
        let mut head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Self::Full(bytes)
    }

    /// `302` to `location`.
    pub fn redirect(location: &str) -> Self {
        Self::Full(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    }

    /// `200` announcing `declared` bytes of which only `sent` ever arrive.
    pub fn stalled_body(declared: usize, sent: &[u8]) -> Self {
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {declared}\r\n\r\n"
        )
        .into_bytes();
        bytes.extend_from_slice(sent);
        Self::Stall(bytes)
    }

    /// `404`.
    pub fn not_found() -> Self {
        Self::Full(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
        )
    }
}

type Route = dyn Fn(&str) -> Answer + Send + Sync;

/// The running server; stops when dropped.
pub struct HttpTarget {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpTarget {
    /// Listens on `127.0.0.1:0`, answering each request path with `route(path)`.
    pub async fn start(
        route: impl Fn(&str) -> Answer + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        Self::start_with(move |_| route).await
    }

    /// Like [`HttpTarget::start`], the routes made knowing the server's own port.
    pub async fn start_with<R>(make: impl FnOnce(u16) -> R) -> std::io::Result<Self>
    where
        R: Fn(&str) -> Answer + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let route = make(addr.port());
        let accepted = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let task = {
            let (accepted, paths, heads) = (
                Arc::clone(&accepted),
                Arc::clone(&paths),
                Arc::clone(&heads),
            );
            tokio::spawn(async move {
                // Connections live in the set: aborting the accept task ends them all.
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let log = Log {
                        paths: Arc::clone(&paths),
                        heads: Arc::clone(&heads),
                    };
                    conns.spawn(serve(stream, Arc::clone(&route), log));
                    while conns.try_join_next().is_some() {}
                }
            })
        };
        Ok(Self {
            addr,
            accepted,
            paths,
            heads,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Request paths served so far, in arrival order.
    pub fn paths(&self) -> Vec<String> {
        crate::locks::lock("http target paths", &self.paths).clone()
    }

    /// The request heads (request line and header lines, as received) served so far.
    pub fn heads(&self) -> Vec<String> {
        crate::locks::lock("http target heads", &self.heads).clone()
    }
}

impl Drop for HttpTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where one connection records what it received.
struct Log {
    paths: Arc<Mutex<Vec<String>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn serve(mut stream: tokio::net::TcpStream, route: Arc<Route>, log: Log) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
    crate::locks::lock("http target paths", &log.paths).push(path.clone());
    let head_only = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    crate::locks::lock("http target heads", &log.heads).push(head_only);
    match route(&path) {
        Answer::Full(bytes) => {
            // The client may hang up early (a capped body): that is not an error here.
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Answer::Stall(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            // Held open until the server is dropped (its task set aborts this one).
            std::future::pending::<()>().await;
        }
    }
}
