//! Memory planning: assigns every activation an offset in one arena by tensor lifetimes.
