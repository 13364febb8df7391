//! What the egress proxy costs per model request: the same scripted model answer fetched
//! directly from the mock model and through `proxy::serve` (token check, key injection,
//! streamed body), both on loopback, side by side in one run.

use std::sync::Arc;

use codex_orchestrator_egress::{self as proxy, ProxySettings};
use codex_orchestrator_testkit::mockmodel::{self, MockScript, ScriptedResponse};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::net::TcpListener;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mock_url, proxy_url) = rt.block_on(async {
        // An endless script: every request gets the same short answer.
        let script = MockScript::new(
            (0..200_000)
                .map(|_| {
                    ScriptedResponse::items(vec![mockmodel::ScriptItem::Message {
                        message: "hello from the model".into(),
                    }])
                })
                .collect(),
        );
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mock = mockmodel::spawn(l, script, |_| {}).expect("mock");
        let upstream = mock.base_url();
        let settings = ProxySettings::new(
            &upstream,
            TOKEN,
            Some("sk-bench".into()),
            proxy::DEFAULT_ALLOWED
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
        .expect("settings");
        let base_path = settings.base_path.clone();
        let pl = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let paddr = pl.local_addr().expect("addr");
        tokio::spawn(proxy::serve(
            settings,
            pl,
            tokio_util::sync::CancellationToken::new(),
        ));
        std::mem::forget(mock);
        (upstream, format!("http://{paddr}{base_path}"))
    });
    let client = Arc::new(proxy::upstream_client().expect("client"));
    let body = serde_json::json!({"model": "gpt-5.5", "input": [], "stream": true}).to_string();
    let fetch = |url: String| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            let r = client
                .post(format!("{url}/responses"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            let text = r.text().await.expect("body");
            assert!(text.contains("response.completed"));
        }
    };
    let mut g = c.benchmark_group("model_request");
    g.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| fetch(mock_url.clone()))
    });
    g.bench_function("via_egress_proxy", |b| {
        b.to_async(&rt).iter(|| fetch(proxy_url.clone()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
