; Inno Setup 6.3+ script (x64compatible needs 6.3) for the Windows installer of Isengard Desktop.
; NOT BUILT OR TESTED HERE (builds so far ran on Linux): see packaging/README.md, "Windows".
;
; Build on Windows, from the repository root:
;   1. make the bundle:   .venv\Scripts\python -m PyInstaller --noconfirm --clean ^
;                            --distpath dist --workpath build\pyinstaller packaging\isengard.spec
;      (gives dist\Isengard Desktop\Isengard Desktop.exe and dist\Isengard Desktop\_internal\)
;   2. compile:           "%ProgramFiles(x86)%\Inno Setup 6\ISCC.exe" packaging\windows\isengard.iss
;      (gives dist\IsengardDesktopSetup-<version>.exe)
;
; Per-user install (no administrator rights): {localappdata}\Programs\Isengard Desktop.
; Uninstall removes only the files this installer wrote. The user's data folder
; (%LOCALAPPDATA%\isengard-desktop by default, or ISENGARD_HOME) and the trainer
; runtime inside it are never touched.

; Keep in step with [project] version in pyproject.toml (tests/unit/test_packaging.py checks).
#define AppVersion "0.1.0"
#define AppName "Isengard Desktop"
#define AppExe "Isengard Desktop.exe"
; the repository root, relative to this script
#define Root "..\.."

[Setup]
; A fixed id: upgrades replace the same installation. Never change it.
AppId={{6C1B7C52-3E0A-4F0B-9B7E-5A8E2D6C4F11}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Isengard Desktop
DefaultDirName={localappdata}\Programs\Isengard Desktop
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per-user only: no elevation, no "install for all users" choice (the paths below are per-user)
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename=IsengardDesktopSetup-{#AppVersion}
SetupIconFile={#Root}\resources\icons\isengard.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; a running app holds its files open: ask to close it before replacing them
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; the whole one-folder bundle made by packaging\isengard.spec
Source: "{#Root}\dist\Isengard Desktop\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs
Source: "{#Root}\resources\icons\isengard.ico"; DestDir: "{app}"; Flags: ignoreversion

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; IconFilename: "{app}\isengard.ico"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; IconFilename: "{app}\isengard.ico"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
