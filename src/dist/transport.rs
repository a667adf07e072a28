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
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

impl TryRead for OwnedReadHalf {
    fn try_read_now<B: BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        // The socket's own non-blocking read: one syscall, no waker.
        self.try_read_buf(buf)
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
