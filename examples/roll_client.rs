//! Talks to `cargo run --example custom_server`: signs up, joins a room, rolls a die.
use parlor::{Client, ErrorCode};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let mut client = Client::connect(addr.as_str())?;
    let user = format!("roller{}", std::process::id());
    client.signup(&user, "correct horse")?;
    client.login(&user, "correct horse")?;
    match client.create("dice", Some("roll with `roll`")) {
        Err(e) if e.code() == Some(&ErrorCode::RoomExists) => drop(client.join("dice")?),
        other => other?,
    }
    let answer = client.request("roll", json!({ "room": "dice", "sides": 20 }))?;
    println!("{user} rolled {} on a d20", answer["result"]);
    client.quit()?;
    Ok(())
}
