//! Network boot (written below).
