//! Schedulers (filled in next).
