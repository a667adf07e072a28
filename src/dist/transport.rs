//! The byte stream under a distribution connection: plain TCP, or TLS over
//! TCP. The connection's reader and writer are generic over it, so each is
//! compiled once per transport and the plain-TCP path is the code it always
//! was: its owned halves, no lock between reader and writer, no indirection
//! per read or write.
//!
//! This module owns splitting a stream into the reader's and the writer's
//! halves and the reader's non-blocking read (its busy poll). It must never
//! buffer or reorder bytes of its own.

use std::io;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A stream a distribution connection runs on.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Reader: TryRead + Send + 'static;
    type Writer: AsyncWrite + Unpin + Send + 'static;

    /// Whether handshake messages carry 4-byte lengths (OTP's TLS
    /// distribution) rather than TCP's 2-byte ones.
    const FOUR_BYTE_HANDSHAKE: bool = false;

    fn split(self) -> (Self::Reader, Self::Writer);
}

/// The reader's half: an ordinary async read, and a read that never waits.
pub(crate) trait TryRead: AsyncRead + Unpin {
    /// Reads what is there now; `WouldBlock` when nothing is.
    fn try_read_now<B: BufMut>(&mut self, buf: &mut B) -> io::Result<usize>;
}

impl Transport for TcpStream {
    type Reader = TcpReader;
    type Writer = OwnedWriteHalf;

    fn split(self) -> (TcpReader, OwnedWriteHalf) {
        let (read, write) = self.into_split();
        (TcpReader::new(read), write)
    }
}

/// The reading half of a TCP connection, with a second handle on the same
/// socket for the busy poll.
///
/// A poll through tokio (`try_read_buf`) only reads once the runtime's I/O
/// driver has seen the socket readable: that takes a thread parked in
/// `epoll_wait` being woken, the very wake-up polling is meant to save, and
/// while every worker is busy nothing is ever found. The second handle
/// reads the socket itself, one `recvfrom` per try. Reading past tokio's
/// back is safe: it only ever finds the socket emptier than it thought, and
/// then waits for the next readiness edge, as after any spurious one.
pub(crate) struct TcpReader {
    half: OwnedReadHalf,
    /// A duplicate of the socket's descriptor (non-blocking, like the
    /// original: the flag belongs to the shared file description); `None`
    /// where it could not be made, and the poll goes through tokio.
    direct: Option<std::net::TcpStream>,
    /// Where a direct read lands before it is copied into the caller's
    /// buffer (initialised once; `std::io::Read` wants initialised memory).
    scratch: Box<[u8]>,
}

impl TcpReader {
    /// Bytes one direct read takes at most: polls serve request/response
    /// traffic, whose reads are small; larger ones go on in the next read.
    const SCRATCH: usize = 16 * 1024;

    fn new(half: OwnedReadHalf) -> Self {
        #[cfg(unix)]
        let direct = {
            use std::os::fd::AsFd;
            let stream: &TcpStream = half.as_ref();
            stream
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(std::net::TcpStream::from)
        };
        #[cfg(not(unix))]
        let direct = None;
        TcpReader {
            half,
            direct,
            scratch: vec![0; Self::SCRATCH].into_boxed_slice(),
        }
    }
}

impl AsyncRead for TcpReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.half).poll_read(cx, buf)
    }
}

impl TryRead for TcpReader {
    fn try_read_now<B: BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        use std::io::Read;
        let Some(direct) = &self.direct else {
            // The socket's own non-blocking read once tokio saw it readable.
            return self.half.try_read_buf(buf);
        };
        let room = buf.remaining_mut().min(self.scratch.len());
        if room == 0 {
            return Ok(0);
        }
        let n = (&*direct).read(&mut self.scratch[..room])?;
        buf.put_slice(&self.scratch[..n]);
        Ok(n)
    }
}

#[cfg(feature = "tls")]
pub(crate) type TlsStream = tokio_rustls::TlsStream<TcpStream>;

#[cfg(feature = "tls")]
impl Transport for TlsStream {
    type Reader = tokio::io::ReadHalf<TlsStream>;
    type Writer = tokio::io::WriteHalf<TlsStream>;
    const FOUR_BYTE_HANDSHAKE: bool = true;

    fn split(self) -> (Self::Reader, Self::Writer) {
        // One TLS session serves both directions, so the halves share it
        // behind tokio's lock (held only within each poll).
        tokio::io::split(self)
    }
}

#[cfg(feature = "tls")]
impl TryRead for tokio::io::ReadHalf<TlsStream> {
    fn try_read_now<B: BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        use tokio::io::AsyncReadExt;
        // A read polled once without a waker: decrypts what has arrived, and
        // is dropped (losing nothing) when nothing has. The next real read
        // registers the real waker.
        let mut read = std::pin::pin!(self.read_buf(buf));
        match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}
