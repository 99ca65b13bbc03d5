import sys

print("about to fail <&>")
sys.exit(3)
