"""Tests of svqtui.control: protocol, codec, socket file, server, headless and ctl."""
