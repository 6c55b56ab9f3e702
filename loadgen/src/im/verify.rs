//! `--verify-postgres`: after a run, the stored rows are compared with the RECEIPTs, so that a
//! message confirmed but not stored, or stored twice, is counted.

use std::collections::HashMap;

use anyhow::{Context, anyhow};

use super::report::Verification;

/// Counts this run's rows in `messages` and checks that every RECEIPTed message is there once.
pub(super) async fn verify_postgres(
    url: &str,
    client_prefix: &str,
    confirmed: &[(String, Vec<u64>)],
) -> anyhow::Result<Verification> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL for --verify-postgres")?;
    let driver = tokio::spawn(connection);
    let users: Vec<&str> = confirmed.iter().map(|(user, _)| user.as_str()).collect();
    let pattern = format!("{client_prefix}%");
    let rows = client
        .query(
            "SELECT sender_id, client_msg_id, count(*) FROM messages \
             WHERE sender_id = ANY($1) AND client_msg_id LIKE $2 \
             GROUP BY sender_id, client_msg_id",
            &[&users, &pattern],
        )
        .await
        .context("counting stored messages")?;
    driver.abort();
    let mut stored: HashMap<(String, u64), i64> = HashMap::new();
    let mut verification = Verification::default();
    for row in rows {
        let sender: String = row.try_get(0)?;
        let client_msg_id: String = row.try_get(1)?;
        let copies: i64 = row.try_get(2)?;
        verification.stored += u64::try_from(copies).unwrap_or(0);
        if copies > 1 {
            verification.duplicated += 1;
        }
        let n = client_msg_id
            .strip_prefix(client_prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("unexpected clientMsgId {client_msg_id}"))?;
        stored.insert((sender, n), copies);
    }
    for (user, receipted) in confirmed {
        for &n in receipted {
            if stored.remove(&(user.clone(), n)).is_none() {
                verification.missing += 1;
            }
        }
    }
    verification.unconfirmed = stored.len() as u64;
    Ok(verification)
}
