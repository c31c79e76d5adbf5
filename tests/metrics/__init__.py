"""Tests of `writetune.metrics`, one file per metric or module (a package, so their names cannot collide with test
files elsewhere)."""
