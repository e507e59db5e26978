//! The receiver's life cycle: bind, serve gRPC and HTTP in the background, shut down.

use crate::{grpc, http, ReceiverError, ReceiverSecurity, Store, TlsIdentity, Transport};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long [`Receiver::shutdown`] lets open connections finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Where the receiver listens, and how it is secured.
///
/// Build it with [`ReceiverConfig::loopback`] or a struct literal ending in
/// `..Default::default()`: more settings may join these fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// The OTLP/gRPC listening address; port 0 picks a free port; `None` serves no gRPC.
    pub grpc_addr: Option<SocketAddr>,
    /// The OTLP/HTTP listening address; port 0 picks a free port; `None` serves no HTTP.
    pub http_addr: Option<SocketAddr>,
    /// TLS and a required header, for both transports; none by default.
    pub security: ReceiverSecurity,
}

impl ReceiverConfig {
    /// Both transports on 127.0.0.1, each on a free port: what tests want.
    pub fn loopback() -> Self {
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        ReceiverConfig {
            grpc_addr: Some(any_port),
            http_addr: Some(any_port),
            ..ReceiverConfig::default()
        }
    }
}

/// A running OTLP receiver. Dropping it stops the servers in the background; call
/// [`Receiver::shutdown`] to wait until the ports are free.
#[derive(Debug)]
pub struct Receiver {
    store: Store,
    // Boxed: keeps `Receiver` small enough to move around in enums.
    security: Box<ReceiverSecurity>,
    grpc: Option<RunningServer>,
    http: Option<RunningServer>,
}

impl Receiver {
    /// Binds the configured addresses and starts serving into a new store.
    pub async fn start(config: ReceiverConfig) -> Result<Receiver, ReceiverError> {
        Self::start_with_store(config, Store::new()).await
    }

    /// Binds the configured addresses and starts serving into `store` (which may already hold
    /// requests, e.g. from before a simulated collector outage, or have an observer).
    pub async fn start_with_store(
        config: ReceiverConfig,
        store: Store,
    ) -> Result<Receiver, ReceiverError> {
        if config.grpc_addr.is_none() && config.http_addr.is_none() {
            return Err(ReceiverError::NoListener);
        }
        let security = config.security;
        // gRPC's TLS is built by tonic from the process's default rustls provider: make it ring,
        // the workspace's provider, unless the program chose one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let grpc_tls = security.tls.as_ref().map(TlsIdentity::tonic_config);
        let http_tls = security
            .tls
            .as_ref()
            .map(TlsIdentity::rustls_config)
            .transpose()?;
        // Bind both before serving either, so a failed bind leaves nothing running.
        let grpc_listener = match config.grpc_addr {
            Some(addr) => Some(bind(Transport::Grpc, addr).await?),
            None => None,
        };
        let http_listener = match config.http_addr {
            Some(addr) => Some(bind(Transport::Http, addr).await?),
            None => None,
        };
        let grpc = grpc_listener.map(|(listener, local_addr)| {
            let store = store.clone();
            let required_header = security.required_header.clone();
            RunningServer::spawn(Transport::Grpc, local_addr, |stop| async move {
                grpc::serve(listener, store, grpc_tls, required_header, stop)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let http = http_listener.map(|(listener, local_addr)| {
            let store = store.clone();
            let required_header = security.required_header.clone();
            RunningServer::spawn(Transport::Http, local_addr, |stop| async move {
                http::serve(listener, store, http_tls, required_header, stop)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        Ok(Receiver {
            store,
            security: Box::new(security),
            grpc,
            http,
        })
    }

    /// The configuration with the addresses actually bound: starting a receiver with it after
    /// [`Receiver::shutdown`] brings the same receiver back (a simulated collector outage).
    pub fn config(&self) -> ReceiverConfig {
        ReceiverConfig {
            grpc_addr: self.grpc_addr(),
            http_addr: self.http_addr(),
            security: (*self.security).clone(),
        }
    }

    /// `https` when the receiver serves TLS, else `http`.
    fn scheme(&self) -> &'static str {
        match self.security.tls {
            Some(_) => "https",
            None => "http",
        }
    }

    /// The address the gRPC server listens on, if it runs.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|server| server.local_addr)
    }

    /// The address the HTTP server listens on, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|server| server.local_addr)
    }

    /// The OTLP/gRPC endpoint for an exporter, e.g. `http://127.0.0.1:40123` (`https://` with
    /// TLS).
    pub fn grpc_endpoint(&self) -> Option<String> {
        self.grpc_addr()
            .map(|addr| format!("{}://{addr}", self.scheme()))
    }

    /// The OTLP/HTTP base URL; exporters post to `{base}/v1/traces`, `/v1/logs`, `/v1/metrics`.
    pub fn http_endpoint(&self) -> Option<String> {
        self.http_addr()
            .map(|addr| format!("{}://{addr}", self.scheme()))
    }

    /// The store that receives everything (a cheap, shared handle).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Stops listening and returns once both ports are free again.
    pub async fn shutdown(self) {
        let grpc = async {
            if let Some(server) = self.grpc {
                server.stop().await;
            }
        };
        let http = async {
            if let Some(server) = self.http {
                server.stop().await;
            }
        };
        tokio::join!(grpc, http);
    }
}

async fn bind(
    transport: Transport,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ReceiverError> {
    let bind_error = |cause| ReceiverError::Bind {
        transport,
        addr,
        cause,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    tracing::info!(%transport, %local_addr, "OTLP receiver listening");
    Ok((listener, local_addr))
}

/// One server task and the means to stop it.
#[derive(Debug)]
struct RunningServer {
    transport: Transport,
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Spawns `serve`, handing it a future that completes when the server should stop (on
    /// [`RunningServer::stop`], or when the server is dropped).
    fn spawn<S, F>(transport: Transport, local_addr: SocketAddr, serve: S) -> Self
    where
        S: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F,
        F: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let stop_signal = Box::pin(async move {
            // A dropped sender also means stop.
            let _ = stopped.await;
        });
        let served = serve(stop_signal);
        let task = tokio::spawn(async move {
            if let Err(error) = served.await {
                tracing::error!(%transport, %local_addr, %error, "OTLP server failed");
            }
        });
        RunningServer {
            transport,
            local_addr,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let RunningServer {
            transport,
            local_addr,
            stop,
            mut task,
        } = self;
        // The task may have ended on its own (and dropped the receiver): nothing to tell then.
        let _ = stop.send(());
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            tracing::warn!(%transport, %local_addr, "connections still open after the grace period; closing them");
            task.abort();
            // Awaiting the aborted task makes sure its listener has been dropped.
            let _ = task.await;
        }
        tracing::info!(%transport, %local_addr, "OTLP receiver stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::received::tests::trace_request;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use prost::Message;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[tokio::test]
    async fn loopback_binds_both_on_free_ports() -> TestResult {
        let receiver = Receiver::start(ReceiverConfig::loopback()).await?;
        let grpc = receiver.grpc_addr().ok_or("no gRPC")?;
        let http = receiver.http_addr().ok_or("no HTTP")?;
        assert!(grpc.ip().is_loopback() && grpc.port() != 0);
        assert!(http.ip().is_loopback() && http.port() != 0);
        assert_ne!(grpc.port(), http.port());
        assert_eq!(
            receiver.grpc_endpoint(),
            Some(format!("http://127.0.0.1:{}", grpc.port()))
        );
        receiver.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn no_address_is_an_error() {
        let result = Receiver::start(ReceiverConfig::default()).await;
        assert!(
            matches!(result, Err(ReceiverError::NoListener)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_a_bind_error_naming_it() -> TestResult {
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = taken.local_addr()?;
        let result = Receiver::start(ReceiverConfig {
            grpc_addr: Some("127.0.0.1:0".parse()?),
            http_addr: Some(addr),
            ..ReceiverConfig::default()
        })
        .await;
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.starts_with(&format!("cannot listen for OTLP/HTTP on {addr}: ")),
            "{message}"
        );
        Ok(())
    }

    /// Shutdown frees both ports even with a client connection still open, and a new receiver
    /// can take the same ports at once (what a simulated collector outage needs).
    #[tokio::test]
    async fn shutdown_frees_the_ports_for_a_restart() -> TestResult {
        let receiver = Receiver::start(ReceiverConfig::loopback()).await?;
        let endpoint = receiver.grpc_endpoint().ok_or("no gRPC")?;
        let config = receiver.config();
        let store = receiver.store();
        let mut client = TraceServiceClient::connect(endpoint.clone()).await?;
        client.export(trace_request()).await?;
        let http_base = receiver.http_endpoint().ok_or("no HTTP")?;
        let http_client = crate::test_http_client();
        http_client
            .post(format!("{http_base}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(trace_request().encode_to_vec())
            .send()
            .await?;

        let started = std::time::Instant::now();
        receiver.shutdown().await;
        assert!(
            started.elapsed() < SHUTDOWN_GRACE * 2,
            "{:?}",
            started.elapsed()
        );
        assert!(
            client.export(trace_request()).await.is_err(),
            "export succeeded while the receiver was down"
        );

        let restarted = Receiver::start_with_store(config.clone(), store.clone()).await?;
        assert_eq!(restarted.grpc_addr(), config.grpc_addr);
        assert_eq!(restarted.http_addr(), config.http_addr);
        let mut client = TraceServiceClient::connect(endpoint).await?;
        client.export(trace_request()).await?;
        assert_eq!(
            store.stats().trace_requests.total(),
            3,
            "one store across the outage"
        );
        restarted.shutdown().await;
        Ok(())
    }
}
