"""Run the harness on remote Macs over SSH (paramiko): inventory, connect, deploy, run, collect."""
