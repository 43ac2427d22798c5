//! How taskctl reaches the service: `--addr` as grpcurl takes it (`host:port`; `http://` and
//! `https://` URLs work too), TLS (with a client certificate for mTLS) and a bearer token.

use std::{path::PathBuf, time::Duration};

use task_service::proto::task::task_client::TaskClient;
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

/// The connection options every command takes.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The Task service: host:port (or an http:// or https:// URL).
    #[arg(
        long,
        global = true,
        env = "TASKCTL_ADDR",
        default_value = "127.0.0.1:50050"
    )]
    pub addr: String,
    /// Speak TLS, trusting these CA certificates (PEM).
    #[arg(long, global = true, env = "TASKCTL_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// Present this client certificate (PEM; mTLS); needs --tls-key-file.
    #[arg(
        long,
        global = true,
        env = "TASKCTL_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "TASKCTL_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    tls_key_file: Option<PathBuf>,
    /// The name the service's certificate must carry (default: the host of --addr).
    #[arg(long, global = true, env = "TASKCTL_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// Bearer token, sent as `authorization: Bearer <token>` (better set in TASKCTL_TOKEN, so
    /// that it stays out of the process list).
    #[arg(long, global = true, env = "TASKCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// The client every command uses.
pub type Client = TaskClient<InterceptedService<Channel, Bearer>>;

/// Adds the token to every call.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Connection {
    /// A client, connecting on first use; the error says what to fix.
    pub fn client(&self) -> Result<Client, String> {
        let tls = self.tls_ca_file.is_some() || self.addr.starts_with("https://");
        let url = if self.addr.contains("://") {
            self.addr.clone()
        } else if tls {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        };
        let mut endpoint = Endpoint::from_shared(url)
            .map_err(|e| format!("--addr {:?} is not host:port ({e})", self.addr))?
            .connect_timeout(Duration::from_secs(5));
        if tls {
            endpoint = endpoint
                .tls_config(self.tls_config()?)
                .map_err(|e| format!("cannot set up TLS: {e}"))?;
        }
        let token = match &self.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| "the token holds characters metadata cannot carry".to_owned())?,
            ),
            None => None,
        };
        Ok(TaskClient::with_interceptor(
            endpoint.connect_lazy(),
            Bearer(token),
        ))
    }

    fn tls_config(&self) -> Result<ClientTlsConfig, String> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let mut config = ClientTlsConfig::new();
        config = match &self.tls_ca_file {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => config.with_enabled_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &self.tls_server_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
}

/// A sentence for each code, so that the person knows what to do next.
pub fn explain(status: &Status, addr: &str) -> String {
    let message = status.message();
    match status.code() {
        Code::InvalidArgument => format!("the request was rejected: {message}"),
        Code::NotFound => format!("not found: {message}"),
        Code::AlreadyExists => format!("already exists: {message}"),
        Code::FailedPrecondition => format!("not possible now: {message}"),
        Code::Internal => format!("the task service failed (is its Redis up?): {message}"),
        Code::Unavailable => format!(
            "cannot reach the task service at {addr} (is it running there? does it speak TLS, \
             needing --tls-ca-file?): {message}"
        ),
        Code::Unknown if message.contains("transport error") => format!(
            "the connection to {addr} failed (a TLS service reached without --tls-ca-file, or \
             not a gRPC service?): {message}"
        ),
        Code::Unauthenticated => format!(
            "the service wants credentials (set TASKCTL_TOKEN, or a client certificate): {message}"
        ),
        Code::PermissionDenied => format!("this caller may not do that: {message}"),
        Code::DeadlineExceeded => format!("the task service did not answer in time: {message}"),
        Code::ResourceExhausted => {
            let retry = status
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" (retry after {v})"))
                .unwrap_or_default();
            format!("too many requests{retry}: {message}")
        }
        Code::Unimplemented => format!(
            "the task service at {addr} does not have this call (an older version?): {message}"
        ),
        code => format!("{code:?}: {message}"),
    }
}
