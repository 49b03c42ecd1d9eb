//! Routing: the service a request belongs to, by host and longest path prefix.
//!
//! Routes that name a host are tried first, like virtual hosts: when one of
//! them matches the request's host, only those routes compete on the path. A
//! route without a host catches every other host. Among candidates the longest
//! matching path prefix wins (a plain string prefix, as in nginx and Envoy).

use std::sync::Arc;

use crate::registry::{Registry, Service};

#[derive(Debug)]
struct Route {
    host: Option<String>,
    prefix: String,
    service: Arc<Service>,
}

/// The routing table, immutable once built.
#[derive(Debug, Default)]
pub struct Router {
    /// Host-specific routes, longest prefix first.
    by_host: Vec<Route>,
    /// Routes for any host, longest prefix first.
    any_host: Vec<Route>,
}

impl Router {
    /// Builds the table from every service's routes.
    pub fn new(registry: &Registry) -> Self {
        let mut router = Router::default();
        for service in registry.services() {
            for r in &service.config.routes {
                let route = Route {
                    host: r.host.clone(),
                    prefix: r.path_prefix.clone(),
                    service: Arc::clone(service),
                };
                match route.host {
                    Some(_) => router.by_host.push(route),
                    None => router.any_host.push(route),
                }
            }
        }
        router
            .by_host
            .sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        router
            .any_host
            .sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        router
    }

    /// The service for a request, given its host (any case, port allowed) and path.
    // TODO: the path is matched as sent, without resolving dot-segments or
    // percent-encoding, so an instance that normalizes `/api/../admin` serves
    // a path another route owns; normalizing first needs a rule for each.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<Service>> {
        if let Some(host) = host.map(strip_port) {
            let mut host_known = false;
            for r in &self.by_host {
                if r.host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
                {
                    host_known = true;
                    if path.starts_with(&r.prefix) {
                        return Some(&r.service);
                    }
                }
            }
            if host_known {
                return None;
            }
        }
        self.any_host
            .iter()
            .find(|r| path.starts_with(&r.prefix))
            .map(|r| &r.service)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn router() -> Router {
        let text = r#"
            [services.web]
            routes = [{ path_prefix = "/" }]
            instances = [{ address = "127.0.0.1:1" }]
            [services.api]
            routes = [{ path_prefix = "/api" }]
            instances = [{ address = "127.0.0.1:2" }]
            [services.admin-api]
            routes = [{ path_prefix = "/api/admin" }]
            instances = [{ address = "127.0.0.1:3" }]
            [services.shop]
            routes = [{ host = "shop.example.com", path_prefix = "/" }]
            instances = [{ address = "127.0.0.1:4" }]
        "#;
        let config = Config::parse(text, Path::new(".")).expect("valid config");
        Router::new(&Registry::from_config(&config))
    }

    fn routed(r: &Router, host: Option<&str>, path: &str) -> Option<String> {
        r.route(host, path).map(|s| s.name.to_string())
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router();
        assert_eq!(
            routed(&r, None, "/api/admin/users").as_deref(),
            Some("admin-api")
        );
        assert_eq!(routed(&r, None, "/api/users").as_deref(), Some("api"));
        assert_eq!(routed(&r, None, "/index.html").as_deref(), Some("web"));
    }

    #[test]
    fn host_routes_take_precedence_and_ignore_case_and_port() {
        let r = router();
        assert_eq!(
            routed(&r, Some("Shop.Example.com:8080"), "/api").as_deref(),
            Some("shop")
        );
        assert_eq!(
            routed(&r, Some("other.example.com"), "/api").as_deref(),
            Some("api")
        );
    }
}
