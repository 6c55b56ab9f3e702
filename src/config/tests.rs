//! Unit tests of reading and validating the configuration.
use super::*;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn built_in_defaults_are_the_shipped_file() {
    let config = Config::from_toml("test", "", no_env()).unwrap();
    assert_eq!(config.server.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(config.limits.max_frame_bytes, 65536);
    assert_eq!(
        config.stomp.heartbeat_ms,
        HeartBeat {
            send_ms: 10000,
            expect_ms: 10000
        }
    );
    assert!(!config.auth.dev_login);
    assert_eq!(config.storage.url, "sqlite://./data/broker.db");
}

#[test]
fn environment_overrides_a_key() {
    let env = vec![(
        "BROKER_SERVER_HTTP_ADDR".to_owned(),
        "127.0.0.1:18080".to_owned(),
    )];
    let config = Config::from_toml("test", "", env).unwrap();
    assert_eq!(config.server.http_addr.to_string(), "127.0.0.1:18080");
}

#[test]
fn environment_override_of_a_number_is_typed() {
    let env = vec![("BROKER_LIMITS_MAX_FRAME_BYTES".into(), "1024".into())];
    let config = Config::from_toml("test", "", env).unwrap();
    assert_eq!(config.limits.max_frame_bytes, 1024);
}

#[test]
fn a_string_key_keeps_numeric_text() {
    let env = vec![("BROKER_AUTH_JWT_SECRET".into(), "12345".into())];
    let config = Config::from_toml("test", "", env).unwrap();
    assert_eq!(config.auth.jwt_secret.as_deref(), Some("12345"));
}

#[test]
fn unknown_key_is_refused_on_one_line() {
    let error = Config::from_toml("f.toml", "[server]\nhttp_adr = \"x\"\n", no_env())
        .unwrap_err()
        .to_string();
    assert!(error.contains("http_adr"), "{error}");
    assert!(!error.contains('\n'), "{error}");
}

#[test]
fn dev_login_needs_a_loopback_address() {
    let text = "[server]\nhttp_addr = \"0.0.0.0:8080\"\n[auth]\ndev_login = true\n";
    let error = Config::from_toml("f", text, no_env()).unwrap_err();
    assert!(error.to_string().contains("loopback"), "{error}");
}

#[test]
fn an_s3_file_store_needs_a_bucket() {
    let error = Config::from_toml("f", "[files]\nstore = \"s3\"\n", no_env()).unwrap_err();
    assert!(error.to_string().contains("files.s3_bucket"), "{error}");
    let text = "[files]\nstore = \"s3\"\ns3_bucket = \"chat\"\n";
    let config = Config::from_toml("f", text, no_env()).unwrap();
    assert_eq!(config.files.store, FileStoreKind::S3);
    assert!(Config::from_toml("f", "[files]\nstore = \"ftp\"\n", no_env()).is_err());
}

#[test]
fn dev_login_needs_a_secret_to_sign_with() {
    let text = "[auth]\ndev_login = true\njwt_public_key_file = \"/etc/broker/jwt.pem\"\n";
    let error = Config::from_toml("f", text, no_env()).unwrap_err();
    assert!(error.to_string().contains("jwt_public_key_file"), "{error}");
}

#[test]
fn web_dir_defaults_to_the_build_output() {
    let config = Config::from_toml("test", "", no_env()).unwrap();
    assert_eq!(config.server.web_dir, PathBuf::from("web/dist"));
}

#[test]
fn variables_of_other_sections_are_left_alone() {
    let env = vec![("BROKER_TEST_POSTGRES_URL".into(), "postgres://x".into())];
    assert!(Config::from_toml("test", "", env).is_ok());
}

#[test]
fn queue_prefetch_may_not_exceed_the_unacked_bound_of_a_subscription() {
    let env = vec![
        (
            "BROKER_LIMITS_MAX_UNACKED_PER_SUBSCRIPTION".into(),
            "50".into(),
        ),
        ("BROKER_LIMITS_QUEUE_PREFETCH".into(), "51".into()),
    ];
    let error = Config::from_toml("test", "", env).unwrap_err();
    assert!(error.to_string().contains("queue_prefetch"), "{error}");
}

#[test]
fn malformed_heartbeat_is_refused() {
    let env = vec![("BROKER_STOMP_HEARTBEAT_MS".into(), "fast".into())];
    assert!(Config::from_toml("test", "", env).is_err());
}
