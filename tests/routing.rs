//! Routing across several services: by host first, then by the longest path prefix.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::Full;

use support::Origin;

/// Four services, each with its own origin that names itself in its answer.
struct Site {
    web: Origin,
    api: Origin,
    api_admin: Origin,
    shop: Origin,
}

impl Site {
    async fn start() -> (Site, tidegate::app::Running) {
        let site = Site {
            web: support::named_origin().await,
            api: support::named_origin().await,
            api_admin: support::named_origin().await,
            shop: support::named_origin().await,
        };
        let config = support::config(&format!(
            r#"
            [services.web]
            routes = [{{ path_prefix = "/" }}]
            instances = [{{ address = "{}" }}]
            [services.api]
            routes = [{{ path_prefix = "/api" }}]
            instances = [{{ address = "{}" }}]
            [services.api-admin]
            routes = [{{ path_prefix = "/api/admin" }}]
            instances = [{{ address = "{}" }}]
            [services.shop]
            routes = [{{ host = "shop.example.test", path_prefix = "/" }}]
            instances = [{{ address = "{}" }}]
            "#,
            site.web.addr, site.api.addr, site.api_admin.addr, site.shop.addr
        ));
        let tidegate = support::start(config).await;
        (site, tidegate)
    }
}

/// Sends a GET with an explicit `Host` and returns the status and body.
async fn get_as(proxy: std::net::SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let req = Request::get(format!("http://{proxy}{path}"))
        .header(header::HOST, host)
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let (status, _, body) = support::send(req).await;
    (status, body)
}

fn answered_by(origin: &Origin) -> String {
    format!("origin {}", origin.addr.port())
}

#[tokio::test]
async fn longest_path_prefix_picks_the_service() {
    let (site, tidegate) = Site::start().await;
    let proxy = tidegate.proxy_addr();

    let cases = [
        ("/", &site.web),
        ("/index.html", &site.web),
        ("/apiary", &site.api),
        ("/api/users/7", &site.api),
        ("/api/admin", &site.api_admin),
        ("/api/admin/users?page=2", &site.api_admin),
    ];
    for (path, origin) in cases {
        let (status, body) = get_as(proxy, "www.example.test", path).await;
        assert_eq!(status, StatusCode::OK, "{path} is routed");
        assert_eq!(
            body,
            answered_by(origin),
            "{path} goes to the longest prefix"
        );
    }
    assert_eq!(site.web.hits(), 2);
    assert_eq!(site.api.hits(), 2);
    assert_eq!(site.api_admin.hits(), 2);
    assert_eq!(site.shop.hits(), 0, "no request named the shop's host");
}

#[tokio::test]
async fn host_routes_win_over_any_host_routes_whatever_the_case_and_port() {
    let (site, tidegate) = Site::start().await;
    let proxy = tidegate.proxy_addr();

    for host in [
        "shop.example.test",
        "SHOP.Example.Test",
        "shop.example.test:8080",
    ] {
        let (status, body) = get_as(proxy, host, "/api/admin/users").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            answered_by(&site.shop),
            "a route naming host {host} takes every path of that host"
        );
    }
    let (_, body) = get_as(proxy, "other.example.test", "/api").await;
    assert_eq!(
        body,
        answered_by(&site.api),
        "other hosts use the any-host routes"
    );
    assert_eq!(site.shop.hits(), 3);
}

#[tokio::test]
async fn a_known_host_without_a_matching_prefix_gets_404() {
    let origin = support::named_origin().await;
    let config = support::config(&format!(
        r#"
        [services.docs]
        routes = [{{ host = "docs.example.test", path_prefix = "/v2" }}]
        instances = [{{ address = "{}" }}]
        "#,
        origin.addr
    ));
    let tidegate = support::start(config).await;

    let (status, body) = get_as(tidegate.proxy_addr(), "docs.example.test", "/v1/intro").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "no route for this host and path\n");
    let (status, _) = get_as(tidegate.proxy_addr(), "docs.example.test", "/v2/intro").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        origin.hits(),
        1,
        "the unrouted request never reached the origin"
    );
}
