use super::*;

#[test]
fn the_example_parses_back_to_the_defaults() {
    let file: ServeArgs = toml::from_str(&example()).expect("the example parses");
    let from_file = to_config(&ServeArgs::default().merge(file), false).expect("valid");
    let defaults = to_config(&ServeArgs::default(), false).expect("valid");
    assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
}

#[test]
fn a_flag_wins_over_the_file() {
    let file: ServeArgs =
        toml::from_str("max-text = 100\nmax-rooms = 7\noperators = [\"ada\"]").expect("parses");
    let flags = ServeArgs {
        max_text: Some(200),
        ..ServeArgs::default()
    };
    let config = to_config(&flags.merge(file), false).expect("valid");
    assert_eq!((config.max_text, config.max_rooms), (200, 7));
    assert_eq!(config.operators, ["ada"]);
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let err = toml::from_str::<ServeArgs>("addr = \"127.0.0.1:1\"\nmax-txt = 5\n")
        .expect_err("unknown key");
    let message = err.to_string();
    assert!(message.contains("max-txt"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn a_storage_flag_replaces_the_files_storage() {
    let file: ServeArgs = toml::from_str("data-dir = \"from-file\"").expect("parses");
    let flags = ServeArgs {
        in_memory: true,
        ..ServeArgs::default()
    };
    let config = to_config(&flags.merge(file), false).expect("--in-memory wins");
    assert!(
        matches!(config.storage, crate::Storage::InMemory),
        "{:?}",
        config.storage
    );
    let file: ServeArgs = toml::from_str("in-memory = true").expect("parses");
    let flags = ServeArgs {
        data_dir: Some("from-flag".into()),
        ..ServeArgs::default()
    };
    let config = to_config(&flags.merge(file), false).expect("--data-dir wins");
    assert!(
        matches!(config.storage, crate::Storage::Dir(_)),
        "{:?}",
        config.storage
    );
}
