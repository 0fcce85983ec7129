//! Flags every mailroot binary shares, declared once and flattened into each binary's clap
//! config (`#[command(flatten)]`): the store's URL, the cluster's mutual-TLS files and the
//! metrics listener, the OTLP trace endpoint.

use clap::Args;

/// Where the store's gRPC port is, by default on this machine.
pub const DEFAULT_STORE: &str = "http://127.0.0.1:7070";

/// `--store`: the store node to talk to (front-ends and `mailrootctl`).
#[derive(Debug, Clone, Args)]
pub struct StoreUrl {
    /// gRPC URL of the store node (https:// with the cluster TLS flags).
    #[arg(long = "store", env = "MAILROOT_STORE", default_value = DEFAULT_STORE, global = true)]
    pub url: String,
}

impl StoreUrl {
    pub fn validate(&self) -> Result<(), String> {
        if self.url.starts_with("http://") || self.url.starts_with("https://") {
            Ok(())
        } else {
            Err(format!(
                "--store: {:?} is not a URL like http://store:7070",
                self.url
            ))
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// `--cluster-ca/--cluster-cert/--cluster-key`: mutual TLS between the nodes, with the files
/// `mailrootctl cluster init` makes. All three or none.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterTls {
    /// Cluster CA (PEM): turns on mutual TLS between the store and its clients.
    #[arg(long, env = "MAILROOT_CLUSTER_CA", global = true)]
    pub cluster_ca: Option<String>,
    /// This node's certificate (PEM), signed by the cluster CA (`mailrootctl cluster init`).
    #[arg(long, env = "MAILROOT_CLUSTER_CERT", global = true)]
    pub cluster_cert: Option<String>,
    /// Key (PEM) of `--cluster-cert`.
    #[arg(long, env = "MAILROOT_CLUSTER_KEY", global = true)]
    pub cluster_key: Option<String>,
}

/// The contents of the three cluster TLS files.
#[derive(Debug, Clone)]
pub struct ClusterPem {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl ClusterTls {
    /// The three paths (CA, certificate, key), or None when cluster TLS is off.
    pub fn files(&self) -> Result<Option<(&str, &str, &str)>, String> {
        match (&self.cluster_ca, &self.cluster_cert, &self.cluster_key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some((ca, cert, key))),
            _ => Err("--cluster-ca, --cluster-cert and --cluster-key go together".into()),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.files().map(|_| ())
    }

    pub fn enabled(&self) -> bool {
        self.cluster_ca.is_some()
    }

    /// Reads the files; an error names the flag and the path.
    pub fn read(&self) -> Result<Option<ClusterPem>, String> {
        let Some((ca, cert, key)) = self.files()? else {
            return Ok(None);
        };
        let read = |flag: &str, path: &str| {
            std::fs::read(path).map_err(|e| format!("--{flag} {path}: {e}"))
        };
        Ok(Some(ClusterPem {
            ca: read("cluster-ca", ca)?,
            cert: read("cluster-cert", cert)?,
            key: read("cluster-key", key)?,
        }))
    }
}

/// `--metrics`: where the node serves `/metrics`, `/healthz` and `/readyz` (`telemetry.rs`).
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsListen {
    /// HTTP address for Prometheus `/metrics`, `/healthz` and `/readyz` (e.g. 0.0.0.0:9090;
    /// port 0 picks a free port, printed as `metrics=` in the ready line). Off by default.
    #[arg(long = "metrics", env = "MAILROOT_METRICS")]
    pub addr: Option<String>,
}

impl MetricsListen {
    pub fn validate(&self) -> Result<(), String> {
        match &self.addr {
            Some(a) if a.parse::<std::net::SocketAddr>().is_err() && !a.contains(':') => Err(
                format!("--metrics: {a:?} is not an address like 0.0.0.0:9090"),
            ),
            _ => Ok(()),
        }
    }
}

/// `--otlp-endpoint`: where the node sends its traces (`tracing_otel.rs`); the store and the
/// front-ends.
#[derive(Debug, Clone, Default, Args)]
pub struct OtlpEndpoint {
    /// OTLP/gRPC collector to send traces to (e.g. http://collector:4317). Off by default:
    /// without it nothing is traced or exported.
    #[arg(long = "otlp-endpoint", env = "MAILROOT_OTLP_ENDPOINT")]
    pub endpoint: Option<String>,
}

impl OtlpEndpoint {
    pub fn validate(&self) -> Result<(), String> {
        match &self.endpoint {
            Some(url) if !url.starts_with("http://") => Err(format!(
                "--otlp-endpoint: {url:?} is not a URL like http://collector:4317 \
                 (OTLP/gRPC in plaintext, to a collector or agent on a trusted network)"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Bin {
        #[command(flatten)]
        store: StoreUrl,
        #[command(flatten)]
        tls: ClusterTls,
        #[command(flatten)]
        metrics: MetricsListen,
        #[command(flatten)]
        otlp: OtlpEndpoint,
    }

    #[test]
    fn cluster_tls_flags_go_together_and_store_must_be_a_url() {
        let ok = Bin::try_parse_from(["bin"]).unwrap();
        assert_eq!(ok.store.url, DEFAULT_STORE);
        assert_eq!(ok.tls.files(), Ok(None));
        assert_eq!(ok.metrics.addr, None, "metrics are off by default");
        assert_eq!(ok.otlp.endpoint, None, "traces are off by default");
        assert!(ok.otlp.validate().is_ok());
        let otlp =
            Bin::try_parse_from(["bin", "--otlp-endpoint", "http://collector:4317"]).unwrap();
        assert!(otlp.otlp.validate().is_ok());
        let bad = Bin::try_parse_from(["bin", "--otlp-endpoint", "collector:4317"]).unwrap();
        assert!(
            bad.otlp
                .validate()
                .unwrap_err()
                .starts_with("--otlp-endpoint:")
        );
        let on = Bin::try_parse_from(["bin", "--metrics", "127.0.0.1:0"]).unwrap();
        assert_eq!(on.metrics.addr.as_deref(), Some("127.0.0.1:0"));
        assert!(on.metrics.validate().is_ok());
        let bad = Bin::try_parse_from(["bin", "--metrics", "9090"]).unwrap();
        assert!(
            bad.metrics
                .validate()
                .unwrap_err()
                .starts_with("--metrics:")
        );
        let half = Bin::try_parse_from(["bin", "--cluster-ca", "ca.pem"]).unwrap();
        assert!(half.tls.validate().unwrap_err().contains("go together"));
        let all = Bin::try_parse_from([
            "bin",
            "--cluster-ca",
            "a",
            "--cluster-cert",
            "b",
            "--cluster-key",
            "c",
        ])
        .unwrap();
        assert_eq!(all.tls.files(), Ok(Some(("a", "b", "c"))));
        assert!(all.tls.read().unwrap_err().starts_with("--cluster-ca a:"));
        let bad = Bin::try_parse_from(["bin", "--store", "store:7070"]).unwrap();
        assert!(bad.store.validate().unwrap_err().starts_with("--store:"));
    }
}
