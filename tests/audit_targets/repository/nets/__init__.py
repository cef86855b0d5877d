"""A small from-scratch library laid out as a package."""
