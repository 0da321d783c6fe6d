//! The deploy system (written below).
