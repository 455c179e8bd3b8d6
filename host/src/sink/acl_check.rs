//! Checks that a plugin's Redis user can run what its grant allows, with
//! `ACL DRYRUN`, command by command: the `FCALL` of the versioned apply and
//! every command the function runs inside (which `ACL DRYRUN` of the
//! `FCALL` alone does not look at), on a probe key under each granted
//! prefix and its version key, plus `SELECT` of the URL's database.

use crate::policy::{Grant, Operation};
use crate::version_keys::companion_key;
use redis::aio::ConnectionLike;

/// The commands a user acting for `grant` must be allowed, as argument
/// lists (the command first), on probe keys under its prefixes.
pub fn required_commands(grant: &Grant, database: i64) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    if database != 0 {
        commands.push(vec!["SELECT".to_owned(), database.to_string()]);
    }
    for prefix in &grant.key_prefixes {
        let key = format!("{prefix}rs-acl-probe");
        let Ok(version_key) = companion_key(&key) else {
            continue;
        };
        for function in ["rs_apply", "rs_apply_many"] {
            commands.push(vec![
                "FCALL".to_owned(),
                function.to_owned(),
                "2".to_owned(),
                key.clone(),
                version_key.clone(),
            ]);
        }
        commands.push(vec!["GET".to_owned(), version_key.clone()]);
        commands.push(vec!["SET".to_owned(), version_key.clone(), "v".to_owned()]);
        for operation in &grant.operations {
            commands.push(match operation {
                Operation::Set => vec!["SET".to_owned(), key.clone(), "v".to_owned()],
                Operation::Delete => vec!["DEL".to_owned(), key.clone()],
                Operation::Expire => vec!["PEXPIRE".to_owned(), key.clone(), "1".to_owned()],
            });
        }
    }
    commands
}

/// What `user` may not run of what `grant` needs, as one message naming
/// the user and each refused command; `Ok` when it may run everything, or
/// when the asking connection may not use `ACL DRYRUN` (then nothing is
/// known, and a debug line says so).
pub async fn check_user<C: ConnectionLike + Send>(
    admin: &mut C,
    user: &str,
    grant: &Grant,
    database: i64,
) -> Result<(), String> {
    let mut refused = Vec::new();
    for command in required_commands(grant, database) {
        let reply: redis::RedisResult<String> = redis::cmd("ACL")
            .arg("DRYRUN")
            .arg(user)
            .arg(&command)
            .query_async(admin)
            .await;
        match reply {
            Ok(ok) if ok == "OK" => {}
            Ok(denied) => refused.push(format!("{} ({denied})", command.join(" "))),
            Err(err) => {
                tracing::debug!(user, error = %err, "cannot check the user's permissions with ACL DRYRUN");
                return Ok(());
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Redis user {user} may not run what its grant needs: {}",
            refused.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grant_decides_the_commands() {
        let mut grant = Grant::prefixes(&["users:"]);
        grant.operations = vec![Operation::Set];
        let commands: Vec<String> = required_commands(&grant, 2)
            .iter()
            .map(|command| command.join(" "))
            .collect();
        assert_eq!(
            commands,
            [
                "SELECT 2",
                "FCALL rs_apply 2 users:rs-acl-probe {users:rs-acl-probe}:rs-version",
                "FCALL rs_apply_many 2 users:rs-acl-probe {users:rs-acl-probe}:rs-version",
                "GET {users:rs-acl-probe}:rs-version",
                "SET {users:rs-acl-probe}:rs-version v",
                "SET users:rs-acl-probe v",
            ]
        );
    }
}
