//! Role matching and authorization.

use super::*;

fn who(subject: &str, groups: &[&str]) -> Identity {
    Identity {
        issuer: "https://issuer.test".into(),
        subject: subject.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        email: None,
        email_verified: false,
        client_id: None,
    }
}

fn role(
    name: &str,
    groups: &[&str],
    operations: &[AdminOperation],
    prefixes: &[&str],
    plugins: &[&str],
) -> RoleConfig {
    RoleConfig {
        name: name.into(),
        subjects: Vec::new(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        email_domains: Vec::new(),
        client_ids: Vec::new(),
        certificates: Vec::new(),
        operations: operations.to_vec(),
        prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
        plugins: plugins.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[test]
fn a_caller_no_role_applies_to_may_do_nothing() {
    let roles = [role("ops", &["ops"], &[AdminOperation::Read], &[], &[])];
    let denied = authorize(
        &roles,
        &who("alice", &["devs"]),
        AdminOperation::Read,
        Target::Nothing,
    );
    assert!(
        matches!(denied, Err(RoleDenial::NoRole { .. })),
        "{denied:?}"
    );
}

#[test]
fn keys_must_all_lie_under_the_roles_prefixes() {
    let roles = [role(
        "users",
        &["ops"],
        &[AdminOperation::Invalidate],
        &["users:"],
        &[],
    )];
    let alice = who("alice", &["ops"]);
    let inside = ["users:1".to_owned(), "users:2".to_owned()];
    let mixed = ["users:1".to_owned(), "orders:2".to_owned()];
    assert_eq!(
        authorize(
            &roles,
            &alice,
            AdminOperation::Invalidate,
            Target::Keys(&inside)
        ),
        Ok("users")
    );
    assert!(
        authorize(
            &roles,
            &alice,
            AdminOperation::Invalidate,
            Target::Keys(&mixed)
        )
        .is_err()
    );
    assert!(
        authorize(
            &roles,
            &alice,
            AdminOperation::Invalidate,
            Target::Keys(&[])
        )
        .is_err()
    );
    assert_eq!(
        authorize(
            &roles,
            &alice,
            AdminOperation::Invalidate,
            Target::Prefix("users:4")
        ),
        Ok("users")
    );
    // A broader prefix than the role's is refused.
    assert!(
        authorize(
            &roles,
            &alice,
            AdminOperation::Invalidate,
            Target::Prefix("user")
        )
        .is_err()
    );
    // The operation must be listed.
    assert!(
        authorize(
            &roles,
            &alice,
            AdminOperation::Resync,
            Target::Plugin("users")
        )
        .is_err()
    );
}

#[test]
fn the_first_role_that_allows_the_call_is_named() {
    let roles = [
        role("readers", &["ops"], &[AdminOperation::Read], &[], &[]),
        role(
            "resyncers",
            &["ops"],
            &[AdminOperation::Resync],
            &[],
            &["*"],
        ),
    ];
    let alice = who("alice", &["ops"]);
    assert_eq!(
        authorize(&roles, &alice, AdminOperation::Resync, Target::Plugin("x")),
        Ok("resyncers")
    );
    assert_eq!(
        authorize(&roles, &alice, AdminOperation::Read, Target::Nothing),
        Ok("readers")
    );
    let denied = authorize(&roles, &alice, AdminOperation::Pause, Target::Plugin("x")).unwrap_err();
    assert_eq!(
        denied.to_string(),
        "none of the caller's roles (readers, resyncers) allows pause on plugin x"
    );
}

#[test]
fn only_verified_email_domains_count() {
    let mut domain_role = role("staff", &[], &[AdminOperation::Read], &[], &[]);
    domain_role.email_domains = vec!["Example.com".into()];
    let mut caller = who("bob", &[]);
    caller.email = Some("bob@example.com".into());
    assert!(!domain_role.applies_to(&caller));
    caller.email_verified = true;
    assert!(domain_role.applies_to(&caller));
    caller.email = Some("bob@example.com.evil.test".into());
    assert!(!domain_role.applies_to(&caller));
}

#[test]
fn client_ids_and_subjects_match_exactly() {
    let mut service = role("svc", &[], &[AdminOperation::Read], &[], &[]);
    service.client_ids = vec!["billing".into()];
    service.subjects = vec!["carol".into()];
    let mut caller = who("billing-2", &[]);
    caller.client_id = Some("billing-2".into());
    assert!(!service.applies_to(&caller));
    let mut bot = who("billing", &[]);
    bot.client_id = Some("billing".into());
    assert!(service.applies_to(&bot));
    // A person signing in through the same client is not the service.
    let mut person = who("dave", &[]);
    person.client_id = Some("billing".into());
    assert!(!service.applies_to(&person));
    assert!(service.applies_to(&who("carol", &[])));
    assert!(!service.applies_to(&who("Carol", &[])));
}

#[test]
fn roles_that_cannot_work_are_refused_when_the_file_is_read() {
    let ok = role("ops", &["ops"], &[AdminOperation::Read], &["users:"], &[]);
    assert_eq!(check_roles(std::slice::from_ref(&ok)), Ok(()));
    let nobody = role("nobody", &[], &[AdminOperation::Read], &[], &[]);
    assert!(
        check_roles(&[nobody])
            .unwrap_err()
            .contains("applies to nobody")
    );
    let everything = role("all", &["ops"], &[AdminOperation::Invalidate], &[""], &[]);
    assert!(
        check_roles(&[everything])
            .unwrap_err()
            .contains("empty prefix")
    );
    assert!(
        check_roles(&[ok.clone(), ok])
            .unwrap_err()
            .contains("another role has this name")
    );
}
