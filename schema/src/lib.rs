//! Diesel `table!` definitions and row types shared by both storage backends.
//!
//! The tables arrive with the IM store; until then this crate only reserves its place in the
//! workspace so that the layout is stable.
