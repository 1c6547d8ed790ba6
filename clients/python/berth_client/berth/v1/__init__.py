"""Generated from proto/berth by clients/python/generate.sh. Do not edit."""
