"""The Bagel backbone (BAGEL-7B-MoT): a transformers-native model and its CLEAR adapter."""
