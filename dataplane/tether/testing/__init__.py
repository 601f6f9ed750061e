"""Helpers for tests, benchmarks and demos: generated signals and a real server process.

Import the submodules you need (`tether.testing.signals`, `tether.testing.server`); this
package imports nothing itself, so using one never pulls in the other's dependencies.
"""
