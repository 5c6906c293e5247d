from calendly_brevo.cli import main

main()
