//! Between the client's opaque cursor and the domain's position in a list.

use domain::Position;
use http_kit::Cursor;

pub fn position(cursor: Cursor) -> Position {
    Position {
        created_at: cursor.created_at,
        id: cursor.id,
    }
}

pub fn cursor(position: Position) -> Cursor {
    Cursor {
        created_at: position.created_at,
        id: position.id,
    }
}
