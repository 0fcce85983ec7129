//! Issue 12 (traces): with `--otlp-endpoint` the store and the front-end export OpenTelemetry
//! spans over OTLP/gRPC, and the trace context crosses their gRPC calls, so that one SMTP
//! delivery is one trace: the front-end's `smtp.deliver` span is the parent of the store's
//! `store.deliver` span. The collector is a small tonic server implementing the OTLP trace
//! service of `opentelemetry-proto`, in this test process.
//!
//! The nodes run with `OTEL_BSP_SCHEDULE_DELAY` at 10 minutes, so their batches go out only
//! when they stop: the spans arrive because SIGTERM flushes them (the last deliveries before a
//! stop are not lost). Nothing sleeps: every wait polls with a deadline (`eventually`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroot_tests::{DOMAIN, Options, Pop3Client, SmtpClient, TestCluster, eventually};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;

const ALICE: &str = "alice@example.test";
/// Batches wait this long (ms): in these tests only a stop sends them.
const BATCH_DELAY_MS: &str = "600000";
const ARRIVE: Duration = Duration::from_secs(20);
const STOP: Duration = Duration::from_secs(30);

/// One exported span and the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    span: Span,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Got>>>);

fn string_of(value: &Option<AnyValue>) -> Option<String> {
    match value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(n) => Some(n.to_string()),
        _ => None,
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string_of(&kv.value))
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push(Got {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    fn spans(&self) -> Vec<Got> {
        self.0.lock().unwrap().clone()
    }

    /// The spans named `name` that `service` sent.
    fn named(&self, service: &str, name: &str) -> Vec<Got> {
        self.spans()
            .into_iter()
            .filter(|g| g.service == service && g.span.name == name)
            .collect()
    }
}

/// The receiver on 127.0.0.1:port, served by its own runtime (kept alive by the caller).
fn start_receiver() -> (tokio::runtime::Runtime, Receiver, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let receiver = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the OTLP receiver");
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(receiver.clone());
    rt.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("OTLP receiver");
    });
    (rt, receiver, addr)
}

fn cluster(store_flags: Vec<String>, frontend_flags: Vec<String>, otel_env: &str) -> TestCluster {
    let options = Options {
        store: store_flags,
        frontend: frontend_flags,
        env: vec![
            ("OTEL_BSP_SCHEDULE_DELAY".into(), BATCH_DELAY_MS.into()),
            // The SDK's own endpoint variable: only `--otlp-endpoint` may turn exports on.
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), otel_env.into()),
        ],
        ..Options::default()
    };
    let c = TestCluster::start_with(1, options, tempfile::tempdir().expect("temp dir"));
    c.ctl_ok(&["domain", "add", DOMAIN], None);
    c.add_mailbox(ALICE, "pw-alice");
    c
}

fn deliver_one(c: &TestCluster) {
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    let r = s
        .send_mail(
            "bob@remote.test",
            &[ALICE],
            b"Subject: traced\r\n\r\nhello\r\n",
        )
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    assert!(s.cmd("QUIT").unwrap().starts_with("221"));
}

/// SIGTERM to the front-end, then to the store; each exits (after flushing its spans).
fn stop_all(c: &mut TestCluster) {
    TestCluster::signal(&c.frontends[0].proc, "TERM");
    let status = c.frontends[0].proc.wait_exit(STOP);
    assert!(status.success(), "front-end exited with {status}");
    TestCluster::signal(&c.store, "TERM");
    let status = c.store.wait_exit(STOP);
    assert!(status.success(), "store exited with {status}");
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store span `child` was made by the front-end span `parent`: same trace, and its
/// parent is that very span.
fn assert_child(parent: &Got, child: &Got) {
    assert_eq!(parent.service, "mailroot-frontend");
    assert_eq!(child.service, "mailroot-store");
    assert_eq!(parent.span.trace_id.len(), 16);
    assert_eq!(
        hex(&child.span.trace_id),
        hex(&parent.span.trace_id),
        "{} is not in the trace of {}",
        child.span.name,
        parent.span.name
    );
    assert_eq!(
        hex(&child.span.parent_span_id),
        hex(&parent.span.span_id),
        "the parent of {} is not {}",
        child.span.name,
        parent.span.name
    );
}

#[test]
fn one_smtp_delivery_is_one_trace_across_front_end_and_store_even_at_log_level_0() {
    let (_rt, receiver, addr) = start_receiver();
    let otlp = vec!["--otlp-endpoint".to_string(), format!("http://{addr}")];
    let mut c = cluster(otlp.clone(), otlp, "");

    // Log level 0 silences the logs of both nodes, not the traces.
    c.ctl_ok(&["config", "set", "log-level", "0"], None);
    let logs = [c.store.log.clone(), c.fe(0).proc.log.clone()];
    eventually("log level 0 on both nodes", ARRIVE, || {
        logs.iter()
            .all(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .contains("log level set cluster-wide")
            })
            .then_some(())
    });

    deliver_one(&c);
    let mut p = Pop3Client::connect(c.fe(0).pop3).unwrap();
    assert!(p.login(ALICE, "pw-alice").unwrap().starts_with("+OK"));
    assert!(!p.retr(1).unwrap().is_empty());
    assert!(p.cmd("DELE 1").unwrap().starts_with("+OK"));
    assert!(p.cmd("QUIT").unwrap().starts_with("+OK"));

    // Batches wait 10 minutes: nothing has been sent yet...
    assert!(
        receiver.spans().is_empty(),
        "spans exported before the stop: {:?}",
        receiver.spans()
    );
    // ...and a stop sends them.
    stop_all(&mut c);
    let (deliver, stored) = eventually(
        "smtp.deliver from the front-end and store.deliver from the store",
        ARRIVE,
        || {
            let fe = receiver.named("mailroot-frontend", "smtp.deliver");
            let st = receiver.named("mailroot-store", "store.deliver");
            match (fe.as_slice(), st.as_slice()) {
                ([fe], [st]) => Some((fe.clone(), st.clone())),
                _ => None,
            }
        },
    );
    for g in receiver.spans() {
        eprintln!(
            "received {:<17} {:<20} trace {} span {} parent {}",
            g.service,
            g.span.name,
            hex(&g.span.trace_id),
            hex(&g.span.span_id),
            hex(&g.span.parent_span_id)
        );
    }
    assert_child(&deliver, &stored);
    assert!(
        deliver.span.parent_span_id.is_empty(),
        "smtp.deliver starts its trace"
    );
    let id = attr(&deliver.span.attributes, "delivery.id").expect("delivery.id on smtp.deliver");
    assert_eq!(
        attr(&stored.span.attributes, "delivery.id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        attr(&deliver.span.attributes, "recipients").as_deref(),
        Some("1")
    );

    // POP3: the login, the RETR and the commit at QUIT, each the parent of its store call.
    for (fe, st) in [
        ("pop3.login", "store.open_maildrop"),
        ("pop3.retr", "store.fetch_message"),
        ("pop3.commit", "store.commit_maildrop"),
    ] {
        let parent = eventually(fe, ARRIVE, || receiver.named("mailroot-frontend", fe).pop());
        let child = eventually(st, ARRIVE, || receiver.named("mailroot-store", st).pop());
        assert_child(&parent, &child);
        assert_ne!(
            hex(&parent.span.trace_id),
            hex(&deliver.span.trace_id),
            "{fe} has its own trace"
        );
    }

    // Level 0 was in force: the delivery wrote no log line on the front-end.
    let fe_log = std::fs::read_to_string(&logs[1]).unwrap_or_default();
    assert!(
        !fe_log.contains("DATA done"),
        "the front-end logged at level 0: {fe_log}"
    );
}

#[test]
fn a_node_without_the_flag_exports_nothing() {
    let (_rt, receiver, addr) = start_receiver();
    let url = format!("http://{addr}");
    // Only the front-end has the flag; the store gets the SDK's own endpoint variable pointing
    // at the receiver, which must not turn anything on.
    let otlp = vec!["--otlp-endpoint".to_string(), url.clone()];
    let mut c = cluster(vec![], otlp, &url);
    deliver_one(&c);
    stop_all(&mut c);
    let deliver = eventually("smtp.deliver from the front-end", ARRIVE, || {
        receiver.named("mailroot-frontend", "smtp.deliver").pop()
    });
    assert!(deliver.span.parent_span_id.is_empty());
    // The front-end's batch came with its stop; the store, stopped after it, sent nothing.
    let services: Vec<String> = receiver.spans().into_iter().map(|g| g.service).collect();
    assert!(
        services.iter().all(|s| s == "mailroot-frontend"),
        "spans from a node without --otlp-endpoint: {services:?}"
    );
}
