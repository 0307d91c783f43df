//! The socket (TCP, Unix or TLS) and the framing of backend messages.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use super::config::{Host, ReplicationConfig, SslMode};
use super::error::{DbError, ReplicationError};

/// The transport under the protocol.
#[derive(Debug)]
pub(super) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens the socket and negotiates TLS as `config.ssl_mode` asks.
pub(super) async fn open(config: &ReplicationConfig) -> Result<Socket, ReplicationError> {
    match &config.host {
        Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{}", config.port));
            Ok(Socket::Unix(UnixStream::connect(path).await?))
        }
        Host::Tcp(host) => {
            let mut tcp = TcpStream::connect((host.as_str(), config.port)).await?;
            tcp.set_nodelay(true)?;
            if config.ssl_mode == SslMode::Disable {
                return Ok(Socket::Tcp(tcp));
            }
            let mut request = BytesMut::new();
            postgres_protocol::message::frontend::ssl_request(&mut request);
            tcp.write_all(&request).await?;
            match tcp.read_u8().await? {
                b'S' => {
                    let tls = tls_config(config)?;
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|e| ReplicationError::TlsConfig(e.to_string()))?;
                    let stream = TlsConnector::from(tls).connect(name, tcp).await?;
                    Ok(Socket::Tls(Box::new(stream)))
                }
                b'N' if config.ssl_mode == SslMode::Prefer => Ok(Socket::Tcp(tcp)),
                b'N' => Err(ReplicationError::TlsNotSupported),
                other => Err(ReplicationError::Protocol(format!(
                    "answer {other:#04x} to SSLRequest"
                ))),
            }
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(config: &ReplicationConfig) -> Result<Arc<rustls::ClientConfig>, ReplicationError> {
    if let Some(tls) = &config.tls_config {
        return Ok(tls.clone());
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ReplicationError::TlsConfig(e.to_string()))?;
    let tls = if config.ssl_mode == SslMode::VerifyFull {
        let mut roots = rustls::RootCertStore::empty();
        match &config.ssl_root_cert {
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| {
                    ReplicationError::TlsConfig(format!("sslrootcert {}: {e}", path.display()))
                })? {
                    let cert = cert.map_err(|e| {
                        ReplicationError::TlsConfig(format!("sslrootcert {}: {e}", path.display()))
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| ReplicationError::TlsConfig(e.to_string()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification(provider())))
            .with_no_client_auth()
    };
    Ok(Arc::new(tls))
}

/// libpq's `prefer` and `require`: encrypt, but do not check who is at the other end.
/// Handshake signatures are still verified.
#[derive(Debug)]
struct NoCertificateVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCertificateVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One backend message: its type byte and body (without the length).
#[derive(Debug)]
pub(super) struct Frame {
    pub tag: u8,
    pub body: Bytes,
}

/// Largest backend message accepted (PostgreSQL's own limit for a row is 1 GB).
const MAX_FRAME: usize = 1 << 30;
/// Read granularity: large reads keep syscalls per change low.
const READ_CHUNK: usize = 256 * 1024;

/// The protocol connection: a socket, a read buffer split into frames, a write buffer.
#[derive(Debug)]
pub(super) struct Wire {
    socket: Socket,
    read: BytesMut,
    pub write: BytesMut,
}

impl Wire {
    pub fn new(socket: Socket) -> Wire {
        Wire {
            socket,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::new(),
        }
    }

    /// Sends what is in the write buffer.
    pub async fn flush(&mut self) -> Result<(), ReplicationError> {
        self.socket.write_all(&self.write).await?;
        self.socket.flush().await?;
        self.write.clear();
        Ok(())
    }

    /// The next backend message. Cancel-safe: bytes read stay in the buffer.
    pub async fn read_frame(&mut self) -> Result<Frame, ReplicationError> {
        loop {
            if let Some(frame) = self.try_frame()? {
                return Ok(frame);
            }
            if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
                self.read.reserve(READ_CHUNK);
            }
            if self.socket.read_buf(&mut self.read).await? == 0 {
                return Err(ReplicationError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
        }
    }

    fn try_frame(&mut self) -> Result<Option<Frame>, ReplicationError> {
        let Some(header) = self.read.first_chunk::<5>() else {
            return Ok(None);
        };
        let tag = header[0];
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| (4..=MAX_FRAME).contains(l))
            .ok_or_else(|| ReplicationError::Protocol(format!("message length {len}")))?;
        if self.read.len() < len + 1 {
            self.read.reserve(len + 1 - self.read.len());
            return Ok(None);
        }
        let mut frame = self.read.split_to(len + 1);
        frame.advance(5);
        Ok(Some(Frame {
            tag,
            body: frame.freeze(),
        }))
    }

    /// Reads until a message that is not a notice or parameter status; an ErrorResponse
    /// becomes `Err(Server)`.
    pub async fn read_significant(&mut self) -> Result<Frame, ReplicationError> {
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                b'N' => {
                    let notice = DbError::parse(&frame.body);
                    tracing::debug!(severity = %notice.severity, code = %notice.code, message = %notice.message, "PostgreSQL notice");
                }
                b'S' | b'K' => {}
                b'E' => return Err(ReplicationError::from(DbError::parse(&frame.body))),
                _ => return Ok(frame),
            }
        }
    }
}
