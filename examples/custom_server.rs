//! A chat server with a command of its own: `roll` throws a die, answers the caller
//! and tells the room. Only a member of the room can roll into it
//! (`Context::send_to_room` answers `not_member` otherwise). Try it with
//! `cargo run --example roll_client`.
use parlor::{CommandError, Context, Server};
use serde_json::{Value, json};

/// The request: `{"op":"roll","room":"lobby","sides":20}` (`sides` defaults to 6).
#[derive(serde::Deserialize)]
struct Roll {
    room: String,
    sides: Option<u32>,
}

fn roll(req: Roll, cx: &mut Context<'_>) -> Result<Value, CommandError> {
    let Some(user) = cx.user().map(str::to_owned) else {
        return Err(CommandError::new("not_authenticated", "log in to roll"));
    };
    let sides = req.sides.unwrap_or(6).clamp(2, 1000);
    // A failing OS random source panics, which answers `internal` to this caller only.
    let result = 1 + getrandom::u32().expect("the OS random source") % sides;
    let event = json!({ "room": req.room, "user": user, "sides": sides, "result": result });
    cx.send_to_room(&req.room, "rolled", &event)?;
    Ok(json!({ "result": result }))
}

fn main() -> Result<(), parlor::ServerError> {
    let server = Server::builder().addr("127.0.0.1:7878").in_memory();
    let server = server.command("roll", roll).build()?;
    println!("custom_server listening on {}", server.local_addr());
    server.run()
}
